"""FHIR extension, tag and code URLs the validation rules read or write."""
from mappings import systems
from mappings.systems import LABGATE_NS, V3_INTERPRETATION

# Standard extension (FHIR extensions pack) for the analysis time (OBX-19,
# ASTM R-13, POCT1-A observation_dttm); Observation.effective is collection.
ANALYSIS_TIME_EXT = systems.ANALYSIS_TIME_EXT

# labgate extension on Specimen: storage temperature since collection,
# valueCode one of room | cold | ice | frozen (specimen_stability.csv words).
STORAGE_TEMPERATURE_EXT = f"{LABGATE_NS}fhir:specimen-storage-temperature"

# labgate extension on Specimen: the analyser's haemolysis index (H-index,
# valueDecimal or valueInteger, the analyser's own scale).
HAEMOLYSIS_INDEX_EXT = f"{LABGATE_NS}fhir:specimen-haemolysis-index"

# meta.tag set on an Observation with a critical value: phone the requester.
NOTIFY_TAG_SYSTEM = f"{LABGATE_NS}notification"
PHONE_NOTIFY_TAG = {"system": NOTIFY_TAG_SYSTEM, "code": "phone",
                    "display": "Critical value: notify the requester by phone"}

INTERPRETATION_SYSTEM = V3_INTERPRETATION
CRITICAL_HIGH = {"system": V3_INTERPRETATION, "code": "HH", "display": "Critical high"}
CRITICAL_LOW = {"system": V3_INTERPRETATION, "code": "LL", "display": "Critical low"}
