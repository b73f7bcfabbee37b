"""``labgate simulate astm|poct1a``: play an instrument session against a
running gateway (tests, the demo, and an administrator checking a new
installation). Prints a summary as JSON; exit status 0 when the session ran
to the end and every result was accepted at the protocol level.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import datetime
from zoneinfo import ZoneInfo

from adapters.astm import scenarios as astm_scenarios
from adapters.astm import simulator as astm_sim
from adapters.poct1a import simulator as poct_sim


def add_parser(sub) -> None:
    """Register ``simulate`` on the ``labgate`` sub-command parser."""
    sim = sub.add_parser("simulate", help="simulate a point-of-care instrument (ASTM or POCT1-A)")
    proto = sim.add_subparsers(dest="protocol", required=True)
    a = proto.add_parser("astm", help="an ASTM E1381/E1394 analyser")
    a.add_argument("--to", required=True, metavar="HOST:PORT")
    a.add_argument("--scenario", default="crp", choices=astm_scenarios.SCENARIOS)
    a.add_argument("--fault", action="append", default=[], choices=sorted(astm_sim.FAULTS),
                   help="inject a fault (repeatable)")
    a.add_argument("--fault-frame", type=int, default=2)
    a.add_argument("--transcript", action="store_true", help="print the byte transcript")
    p = proto.add_parser("poct1a", help="a POCT1-A2 device")
    p.add_argument("--to", required=True, metavar="HOST:PORT")
    p.add_argument("--scenario", default="hba1c", choices=sorted(poct_sim.SCENARIOS))
    p.add_argument("--fault", action="append", default=[], choices=sorted(poct_sim.FAULTS),
                   help="inject a fault (repeatable)")
    p.add_argument("--serial", default="000987", help="DEV.serial_id the device announces")
    p.add_argument("--operator", default="OP017")
    p.add_argument("--patient", default="13116900216")
    p.add_argument("--qc-first", action="store_true", help="send the QC run before the patient result")
    for parser in (a, p):
        parser.add_argument("--timeout", type=float, default=60.0, help="give up after this many seconds")
    sim.set_defaults(func=run)


def _address(to: str) -> tuple[str, int]:
    host, _, port = to.rpartition(":")
    return host or "127.0.0.1", int(port)


def _analyser_clock() -> datetime:
    """Norwegian wall-clock time without offset, as an analyser's clock reads."""
    return datetime.now(ZoneInfo("Europe/Oslo")).replace(tzinfo=None, microsecond=0)


async def _astm(args) -> dict:
    host, port = _address(args.to)
    summary = await astm_sim.run_simulation(host, port, scenario=args.scenario,
                                            faults=set(args.fault), fault_frame=args.fault_frame,
                                            session_timeout=args.timeout,
                                            now=_analyser_clock())
    if not args.transcript:
        summary.pop("transcript", None)
    return summary


async def _poct(args) -> dict:
    host, port = _address(args.to)
    result = await poct_sim.run_simulation(host, port, scenario=args.scenario,
                                           faults=set(args.fault), device_serial=args.serial,
                                           operator_id=args.operator, patient_id=args.patient,
                                           qc_first=args.qc_first, linger=0.5)
    result["ok"] = bool(result["completed"]) and not result["gateway_errors"]
    return result


def run(args: argparse.Namespace) -> int:
    runner = _astm if args.protocol == "astm" else _poct
    try:
        summary = asyncio.run(asyncio.wait_for(runner(args), args.timeout))
    except (OSError, TimeoutError, ValueError) as e:   # shown to the person at the terminal
        print(f"labgate simulate: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2, default=str))
    return 0 if summary.get("ok") else 1
