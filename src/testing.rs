//! Fixtures for unit tests: fluent builders of the custom resources, one section per kind.
//! Plain values only: nothing here talks to a cluster.

use jiff::Timestamp;

/// A timestamp from RFC 3339 text (panics on a typo: tests only).
pub fn ts(s: &str) -> Timestamp {
    s.parse()
        .unwrap_or_else(|e| panic!("{s:?} is not a timestamp: {e}"))
}

// ---------------------------------------------------------------------------------------
// MaturityAssessment
// ---------------------------------------------------------------------------------------

pub use assessment::AssessmentBuilder;

pub mod assessment {
    use std::collections::BTreeMap;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    use super::ts;
    use crate::api::MaturityAssessment;
    use crate::api::common::DateString;
    use crate::api::maturity_assessment::{
        Attestation, Exemption, MaturityAssessmentSpec, MaturityAssessmentStatus, ModelName,
        ReportTimes, Reports, Scope,
    };
    use crate::api::names::REPORT_NOW_ANNOTATION;
    use crate::model::PRACTICES;

    /// Until when [`AssessmentBuilder::exempt`] exempts.
    pub const FAR_FUTURE: &str = "2099-12-31";

    /// `AssessmentBuilder::new("a").target_level(3).weekly().report_now("t1").build()`:
    /// namespace `shop`, generation 1, nothing declared, no status unless given.
    pub struct AssessmentBuilder {
        a: MaturityAssessment,
    }

    impl AssessmentBuilder {
        pub fn new(name: &str) -> Self {
            Self {
                a: MaturityAssessment {
                    metadata: ObjectMeta {
                        name: Some(name.into()),
                        namespace: Some("shop".into()),
                        uid: Some(format!("uid-{name}")),
                        generation: Some(1),
                        ..Default::default()
                    },
                    spec: MaturityAssessmentSpec {
                        model: ModelName::CustomerService,
                        scope: Scope::default(),
                        target_level: None,
                        attestations: Vec::new(),
                        exemptions: Vec::new(),
                        signals: None,
                        reports: None,
                    },
                    status: None,
                },
            }
        }

        pub fn namespace(mut self, ns: &str) -> Self {
            self.a.metadata.namespace = Some(ns.into());
            self
        }

        pub fn generation(mut self, g: i64) -> Self {
            self.a.metadata.generation = Some(g);
            self
        }

        pub fn target_level(mut self, level: i32) -> Self {
            self.a.spec.target_level = Some(level);
            self
        }

        fn reports(&mut self) -> &mut Reports {
            self.a.spec.reports.get_or_insert_with(Reports::default)
        }

        /// Weekly reports enabled.
        pub fn weekly(mut self) -> Self {
            self.reports().weekly = true;
            self
        }

        /// Monthly reports enabled.
        pub fn monthly(mut self) -> Self {
            self.reports().monthly = true;
            self
        }

        /// The report-now annotation set to `token`.
        pub fn report_now(mut self, token: &str) -> Self {
            self.a
                .metadata
                .annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(REPORT_NOW_ANNOTATION.into(), token.into());
            self
        }

        /// `practice` exempt until [`FAR_FUTURE`].
        pub fn exempt(mut self, practice: &str) -> Self {
            self.a.spec.exemptions.push(Exemption {
                practice: practice.into(),
                reason: "does not apply here".into(),
                until: DateString::new(FAR_FUTURE),
            });
            self
        }

        /// Every practice of the model at level `level` or below exempt, except `but`.
        pub fn exempt_up_to(mut self, level: u8, but: &[&str]) -> Self {
            for p in PRACTICES
                .iter()
                .filter(|p| p.level <= level && !but.contains(&p.id))
            {
                self = self.exempt(p.id);
            }
            self
        }

        /// `practice` attested on `date` (default review period).
        pub fn attest(mut self, practice: &str, date: &str) -> Self {
            self.a.spec.attestations.push(Attestation {
                practice: practice.into(),
                by: "lead@example.com".into(),
                evidence: "https://wiki/review".into(),
                attested_at: DateString::new(date),
                review_every: None,
            });
            self
        }

        /// The whole status (e.g. the outcome of an earlier pass).
        pub fn status(mut self, s: MaturityAssessmentStatus) -> Self {
            self.a.status = Some(s);
            self
        }

        fn times(&mut self) -> &mut ReportTimes {
            self.a
                .status
                .get_or_insert_with(Default::default)
                .reports
                .get_or_insert_with(Default::default)
        }

        /// The last weekly report was produced at `t` (RFC 3339).
        pub fn last_weekly(mut self, t: &str) -> Self {
            self.times().last_weekly = Some(Time(ts(t)));
            self
        }

        /// The last monthly report was produced at `t` (RFC 3339).
        pub fn last_monthly(mut self, t: &str) -> Self {
            self.times().last_monthly = Some(Time(ts(t)));
            self
        }

        /// The report-now token acted on last.
        pub fn last_report_now(mut self, token: &str) -> Self {
            self.times().last_report_now = Some(token.into());
            self
        }

        pub fn build(self) -> MaturityAssessment {
            self.a
        }
    }
}
