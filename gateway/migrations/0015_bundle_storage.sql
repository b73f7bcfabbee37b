-- The canonical bundle (~9 KB of FHIR JSON per message, from ~1.4 KB of HL7 v2)
-- is written once and read back by delivery, the audit triggers and the
-- console. Compressing it with PostgreSQL's default pglz was a quarter of the
-- CPU the group commit costs PostgreSQL (docs/performance.md). lz4 compresses
-- nearly as well for a fraction of the CPU; a server built without lz4
-- (the embedded one) stores the bundle out of line uncompressed instead:
-- ~4x the disk per bundle, bounded by [retention]. To go back to pglz:
--   ALTER TABLE message ALTER COLUMN bundle SET STORAGE EXTENDED;
--   ALTER TABLE message ALTER COLUMN bundle SET COMPRESSION pglz;
-- Either applies to rows written afterwards; existing rows stay as they are.
DO $$
BEGIN
    ALTER TABLE message ALTER COLUMN bundle SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    ALTER TABLE message ALTER COLUMN bundle SET STORAGE EXTERNAL;
END $$;
