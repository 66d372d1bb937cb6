//! The API server's side of authors: the key of the authors' proofs (a Secret in the
//! operator's namespace, made at the first start) and SubjectAccessReviews of what an
//! author may do.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, PostParams};

use super::{Error, Kube, bounded};
use crate::api::names::{MANAGED_BY, MANAGED_BY_LABEL};
use crate::authz::{Author, Key, Permission, Verdict, may_not};

const KEY_FIELD: &str = "key";

/// The proofs' key from Secret `name` in `namespace`; made (32 random bytes) when there is
/// none yet. Every replica reads the same Secret, so they all prove and verify alike. Not
/// fenced: a standby's webhook records authors too.
pub async fn author_key(
    client: &Client,
    namespace: &str,
    name: &str,
    limit: Duration,
) -> Result<Key, Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    for _ in 0..3 {
        if let Some(s) = bounded(limit, api.get_opt(name)).await? {
            let bytes = s
                .data
                .as_ref()
                .and_then(|d| d.get(KEY_FIELD))
                .map(|b| b.0.clone())
                .unwrap_or_default();
            return Key::from_bytes(&bytes).ok_or_else(|| {
                Error::Encode(format!(
                    "Secret {namespace}/{name} has no {KEY_FIELD} of at least 32 bytes; delete it and the operator makes a new one"
                ))
            });
        }
        let secret = Secret {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                labels: Some(BTreeMap::from([(
                    MANAGED_BY_LABEL.into(),
                    MANAGED_BY.into(),
                )])),
                ..Default::default()
            },
            data: Some(BTreeMap::from([(
                KEY_FIELD.into(),
                ByteString(crate::clock::secret_key().map_err(Error::Encode)?.to_vec()),
            )])),
            type_: Some("Opaque".into()),
            ..Default::default()
        };
        match bounded(limit, api.create(&PostParams::default(), &secret)).await {
            Ok(_) => continue,
            // Another replica made it first: read theirs.
            Err(Error::Api(kube::Error::Api(s))) if s.code == 409 => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Error::Encode(format!(
        "Secret {namespace}/{name} kept changing while it was read"
    )))
}

/// Whether `user` may approve the exemptions of assessment `name` in `namespace` (the verb
/// [`crate::attest::APPROVE_VERB`] on its subresource `exemptions`): a SubjectAccessReview,
/// not fenced, since the webhook answers on a standby too.
pub async fn may_approve(
    client: &Client,
    limit: Duration,
    user: &Author,
    namespace: &str,
    name: &str,
) -> Result<bool, Error> {
    use crate::attest::{APPROVE_RESOURCE, APPROVE_SUBRESOURCE, APPROVE_VERB};
    let api: Api<SubjectAccessReview> = Api::all(client.clone());
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.username.clone()),
            groups: Some(user.groups.clone()),
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(namespace.into()),
                verb: Some(APPROVE_VERB.into()),
                group: Some(crate::api::common::GROUP.into()),
                resource: Some(APPROVE_RESOURCE.into()),
                subresource: Some(APPROVE_SUBRESOURCE.into()),
                name: Some(name.into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let got = bounded(limit, api.create(&PostParams::default(), &review)).await?;
    Ok(got.status.is_some_and(|s| s.allowed))
}

impl Kube {
    /// Whether `author` may do each of `needs` (a SubjectAccessReview each, the first
    /// refusal ends it): the sentence of the first thing they may not do.
    pub async fn may(&self, author: &Author, needs: &[Permission]) -> Result<Verdict, Error> {
        let api: Api<SubjectAccessReview> = Api::all(self.client.clone());
        for p in needs {
            let review = SubjectAccessReview {
                spec: SubjectAccessReviewSpec {
                    user: Some(author.username.clone()),
                    groups: Some(author.groups.clone()),
                    resource_attributes: Some(ResourceAttributes {
                        namespace: Some(p.namespace.clone()),
                        verb: Some(p.verb.into()),
                        group: Some(p.group.into()),
                        resource: Some(p.resource.into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ..Default::default()
            };
            let got = self
                .call(api.create(&PostParams::default(), &review))
                .await?;
            if !got.status.is_some_and(|s| s.allowed) {
                return Ok(Verdict::Denied(may_not(author, p)));
            }
        }
        Ok(Verdict::Allowed)
    }
}
