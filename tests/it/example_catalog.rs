//! The example province catalog is real data a newcomer can trust: every item valid, many
//! departments, a mix of types, case types and limits.

use crate::common;

use std::collections::BTreeSet;
use tongban::catalog;
use tongban::ids;

#[test]
fn the_example_catalog_imports_whole() {
    let config = common::config();
    let text =
        std::fs::read_to_string(common::repo().join("examples/province/catalog.json")).unwrap();
    let items = catalog::parse_import(&config.schemas, &text)
        .unwrap_or_else(|errors| panic!("example catalog has bad records: {errors:?}"));
    assert!(items.len() >= 25, "{} items", items.len());

    let departments: BTreeSet<&str> = items.iter().map(|i| i.department.name.as_str()).collect();
    assert!(departments.len() >= 6, "{departments:?}");
    for needed in ["市场监督", "公安", "人力资源", "住房", "卫生健康", "民政"] {
        assert!(
            departments.iter().any(|d| d.contains(needed)),
            "no {needed} department"
        );
    }
    let types: BTreeSet<&str> = items.iter().map(|i| i.item_type.as_str()).collect();
    assert!(types.len() >= 4, "{types:?}");
    let case_types: BTreeSet<&str> = items.iter().map(|i| i.case_type.as_str()).collect();
    assert!(case_types.len() >= 2);
    for item in &items {
        assert!(ids::check_item_code(&item.code).is_ok());
        assert!(
            item.name
                .chars()
                .any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))
        );
        assert!(
            item.legal_basis
                .iter()
                .all(|b| b.title.starts_with('《') || b.title.contains('号'))
        );
    }
}
