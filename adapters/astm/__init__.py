"""ASTM E1381 (LIS01-A2) low-level protocol and E1394 (LIS02-A2) records.

- :mod:`.frames`    control characters, checksums, frame encoding
- :mod:`.actions`   what the state machines ask their host to do
- :mod:`.e1381`     sans-io Receiver and Sender state machines
- :mod:`.records`   delimiters, escapes, one record
- :mod:`.e1394`     messages: parse to a tree (H/P/O/R/C/Q/M/S/L), build back
- :mod:`.server`    asyncio TCP listener for instruments
- :mod:`.simulator` an instrument simulator with fault injection
"""
