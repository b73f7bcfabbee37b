"""Identifier and code system URIs used in the canonical FHIR form.

Sources: ../shared/design/DOMAIN.md §1 (no-basis, NILAR, kodeverk).
"""
FNR = "urn:oid:2.16.578.1.12.4.1.4.1"      # fødselsnummer
DNR = "urn:oid:2.16.578.1.12.4.1.4.2"      # D-nummer
FHNR = "urn:oid:2.16.578.1.12.4.1.4.3"     # felles hjelpenummer
HPR = "urn:oid:2.16.578.1.12.4.1.4.4"      # helsepersonellnummer
HNR = "HNR"                                # local H-nummer (no-basis: system "HNR")
ENH = "urn:oid:2.16.578.1.12.4.1.4.101"    # organisasjonsnummer
RESH = "urn:oid:2.16.578.1.12.4.1.4.102"
HER = "urn:oid:2.16.578.1.12.4.1.2"

# NLK (volven 7280): the canonical value used internally, and the spellings
# accepted on input (DOMAIN.md §0 implication 1).
NLK = "urn:oid:2.16.578.1.12.4.1.1.7280"
NLK_ALIASES = frozenset({
    NLK,
    "http://ehelse.no/fhir/CodeSystem/no-kodeverk-7280-nlk",
    "http://helsedir.no/fhir/CodeSystem/no-kodeverk-7280-nlk",
    "http://ehelse.no/fhir/CodeSystem/7280",
    "http://helsedir.no/fhir/CodeSystem/7280",
})
SPECIMEN_TYPE_8351 = "urn:oid:2.16.578.1.12.4.1.1.8351"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
V2_0487 = "http://terminology.hl7.org/CodeSystem/v2-0487"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
V3_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"

# The time a result was produced by the analyser (OBX-19, ASTM R-13, POCT
# SVC.observation_dttm); the validation rules read specimen age from it.
ANALYSIS_TIME_EXT = "http://hl7.org/fhir/StructureDefinition/observation-analysis-date-time"
# Times without an offset are read as local Norwegian time.
DEFAULT_TZ = "Europe/Oslo"

# Systems the gateway uses for identifiers it derives from message fields
# (placer/filler order numbers, specimen ids) when the sender gives no OID.
LABGATE_NS = "urn:labgate:"


def local_system(kind: str, assigner: str) -> str:
    """A stable identifier system for a sender's local numbers.

    ``kind`` is e.g. "placer", "filler", "specimen"; ``assigner`` the
    assigning authority as the message names it (EI-2/EI-3 or MSH-4).
    """
    assigner = assigner.strip() or "unknown"
    return f"{LABGATE_NS}{kind}:{assigner}"


def normalise_code_system(system: str) -> str:
    """Map every accepted spelling of a Norwegian code system to one value."""
    if system in NLK_ALIASES:
        return NLK
    return system
