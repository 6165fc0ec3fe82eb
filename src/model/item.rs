//! The catalog's code lists: an item's type (事项类型) and whether it is in force.

code_list! {
    /// 事项类型, the national item type codes.
    pub enum ItemType ("item type (事项类型)") {
        Licensing = "01",
        Penalty = "02",
        Coercion = "03",
        Levy = "04",
        Benefit = "05",
        Inspection = "06",
        Confirmation = "07",
        Reward = "08",
        Adjudication = "09",
        OtherPower = "10",
        PublicService = "20",
    }
}

impl ItemType {
    pub fn name_zh(self) -> &'static str {
        match self {
            ItemType::Licensing => "行政许可",
            ItemType::Penalty => "行政处罚",
            ItemType::Coercion => "行政强制",
            ItemType::Levy => "行政征收",
            ItemType::Benefit => "行政给付",
            ItemType::Inspection => "行政检查",
            ItemType::Confirmation => "行政确认",
            ItemType::Reward => "行政奖励",
            ItemType::Adjudication => "行政裁决",
            ItemType::OtherPower => "其他行政权力",
            ItemType::PublicService => "公共服务",
        }
    }
}

code_list! {
    /// Whether an item is in force: active, suspended (暂停) or revoked (取消).
    pub enum ItemStatus ("item status") {
        Active = "active",
        Suspended = "suspended",
        Revoked = "revoked",
    }
}
