"""The FHIR R4 order/result API (issue 4): EHR orders in, laboratories pull
and claim referred specimens, results linked back to their orders.

Modules: ``intake`` (untrusted JSON → checked resources), ``outcome``
(OperationOutcome rendering), ``ordering`` (routing and storage of orders),
``lab`` (search, claim, receipt, shipment view), ``linking`` (results →
orders, the internal ``orders`` destination), ``reads`` (read/search API),
``routes`` (the HTTP handlers). Design: docs/fhir.md.
"""
