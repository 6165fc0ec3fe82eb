-- The department (USCC) of each application's item, kept with the application when it is
-- accepted, so that whatever follows from it (its case events' feed entries, its case) names
-- the department without reading the catalog again. Applications accepted before take it
-- from the catalog version they were accepted against ('' if that version is gone).
ALTER TABLE applications ADD COLUMN department TEXT NOT NULL DEFAULT '';
UPDATE applications SET department = COALESCE(
    (SELECT c.department_uscc FROM catalog_items c
      WHERE c.code = applications.item_code AND c.version = applications.item_version),
    '');
