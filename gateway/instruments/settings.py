"""Configuration models for point-of-care instruments (used by gateway.config).

``[[instruments]]``, ``[[operators]]``, ``[[qc_targets]]`` and
``[instrument_settings]`` in the TOML file; documented in
docs/configuration.md and docs/instruments.md. The registry tables are
synced from these at start-up (see :mod:`gateway.instruments.registry`).
"""
from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Instrument(_Strict):
    serial: str = Field(min_length=1, max_length=64,
                        description="serial number as the analyser reports it (H-5.3 / R-14 / DEV.serial_id)")
    model: str = ""
    site: str = Field("", description="where it stands, e.g. 'Sykehjem A'")
    protocol: Literal["astm", "poct1a"]
    system: str = Field(description="the system identity (listener system) allowed to post for it")
    code_map: str = Field(description="name of a code map CSV (mappings/codemaps or instrument_settings.codemaps_dir)")
    analyses: list[str] = Field(min_length=1, description="NLK codes it may report")
    qc_interval_minutes: dict[str, int] = Field(
        default_factory=dict, description="per-analysis QC interval; default qc_intervals.csv")
    enabled: bool = True

    @model_validator(mode="after")
    def _check(self):
        for code, minutes in self.qc_interval_minutes.items():
            if minutes <= 0:
                raise ValueError(f"qc_interval_minutes.{code}: must be positive")
        return self


class Operator(_Strict):
    id: str = Field(min_length=1, max_length=64, description="operator id as typed on the analyser")
    name: str = ""
    hpr: str | None = Field(None, pattern=r"^\d{1,9}$", description="HPR number, if any")
    analyses: list[str] = Field(min_length=1, description='NLK codes the operator is certified for, or "*"')
    sites: list[str] = Field(default_factory=list, description="sites where certified; empty = all")
    permission_level: str = Field("1", description="OPL ACC.permission_level_cd (vendor: 1 user, 4 supervisor)")
    expires: date | None = Field(None, description="certificate expiry (inclusive)")


class QcTarget(_Strict):
    analysis: str
    lot: str | None = None
    material: str | None = None
    level: str | None = None
    low: float
    high: float
    unit: str | None = None

    @model_validator(mode="after")
    def _check(self):
        if not (self.lot or self.material):
            raise ValueError("a QC target needs lot or material")
        if self.low > self.high:
            raise ValueError("low is above high")
        return self


class InstrumentSettings(_Strict):
    codemaps_dir: str | None = Field(None, description="folder of code map CSVs; default: the shipped ones")
    qc_material_pattern: str | None = Field(None, description="regex marking ASTM O-3/O-16 as control material")
    lock_directive: str = Field("LOCK", description="POCT1-A DTV code pushed (at HEL) to lock an analysis")
    astm_frame_timeout_s: float = Field(30.0, gt=0, description="E1381 receiver timer")
    astm_ack_timeout_s: float = Field(15.0, gt=0, description="E1381 sender timer (host-query answers)")
    poct_idle_timeout_s: float = Field(300.0, gt=0)
    poct_ack_timeout_s: float = Field(30.0, gt=0)
