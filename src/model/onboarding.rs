//! Onboarding (第五条): a department's request to connect a system, the conformance probes run
//! on it, the 营商局's decision, and where each system stands on the four integrations.

code_list! {
    /// Where an onboarding request stands: refused at submission (it did not compile, its
    /// mapping tests failed, it names a system not on the inventory), being probed, awaiting the
    /// reviewer, rejected with reasons, or live (approved and activated).
    pub enum OnboardingState ("onboarding state") {
        Refused = "refused",
        Probing = "probing",
        AwaitingReview = "awaiting_review",
        Rejected = "rejected",
        Live = "live",
    }
}

impl OnboardingState {
    /// Whether the request is still on its way to a decision.
    pub fn pending(self) -> bool {
        matches!(
            self,
            OnboardingState::Probing | OnboardingState::AwaitingReview
        )
    }
}

code_list! {
    /// A conformance probe, one per integration 第十一条 requires.
    pub enum Probe ("conformance probe") {
        /// Item data from one source: every item the system claims is the catalog's.
        SameSource = "same_source",
        /// Unified identity: the system refuses a delivery without the hub's assertion or with
        /// a forged one, and accepts one with a valid assertion.
        Identity = "identity",
        /// E-supervision: a simulated transaction (模拟办事) the system reports on in time.
        SimulatedTransaction = "simulated_transaction",
        /// Result sharing: the system returns a result for the simulated transaction that
        /// validates and can be sealed.
        ResultSharing = "result_sharing",
    }
}

code_list! {
    /// Where a system stands on one of the four integrations (第十一条), on the evidence of its
    /// real traffic and its latest probes.
    pub enum IntegrationStatus ("integration status") {
        Integrated = "integrated",
        Partial = "partial",
        NotIntegrated = "not_integrated",
    }
}

code_list! {
    /// What a probe found.
    pub enum ProbeOutcome ("probe outcome") {
        Passed = "passed",
        Failed = "failed",
    }
}

code_list! {
    /// A reviewer's decision on an onboarding request.
    pub enum Decision ("onboarding decision") {
        Approve = "approve",
        Reject = "reject",
    }
}
