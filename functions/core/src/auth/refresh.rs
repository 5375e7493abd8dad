//! Refresh tokens and their families.
//!
//! A login (an ID token of an interactive issuer exchanged with `offline_token=true` or
//! `access_type=offline`) starts a *family*: a random id and one absolute expiry, both fixed at
//! that first issue. Every refresh token minted from a refresh token belongs to its family and
//! never outlives it ([`Auth::issue_refresh`]), so a leaked token cannot renew itself forever,
//! and revoking the family (`revoked_refresh_families` in the policy) revokes every copy at
//! once. At every use the token is re-checked against what is in force *now*: the policy's
//! revocations, and the configuration of its issuer (still trusted, still interactive, one of
//! the token's audiences still accepted) — [`Auth::check_refresh`].
//!
//! Layer rule: like the rest of `auth`, no storage and no HTTP; the token endpoint decides what
//! a refusal looks like to the client.

use super::token::{RefreshClaims, TokenError};
use super::{Auth, Identity, new_jti, now};

/// A refresh-token family: the id every token of one login carries, and the absolute expiry
/// (Unix seconds) none of them outlives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshFamily {
    /// The family id (random, not secret: it is logged and written into revocation lists).
    pub id: String,
    /// When the whole family expires.
    pub expires: u64,
}

/// A credential the token endpoint accepted: who it is, and the family it came from when it
/// was a refresh token.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// The identity.
    pub identity: Identity,
    /// The refresh-token family, for a refresh token.
    pub family: Option<RefreshFamily>,
}

/// Why a refresh token this registry signed is no longer honoured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RefreshError {
    /// Its `jti` is in `revoked_refresh_tokens`.
    #[error("the refresh token is revoked")]
    Revoked,
    /// Its family is in `revoked_refresh_families`.
    #[error("the refresh token's family is revoked")]
    FamilyRevoked,
    /// It was issued before `refresh_tokens_not_before`.
    #[error("the refresh token was issued before the policy's cut-off")]
    CutOff,
    /// Its issuer is no longer a trusted issuer.
    #[error("the refresh token's issuer is no longer trusted")]
    IssuerGone,
    /// Its issuer is no longer marked interactive.
    #[error("the refresh token's issuer no longer gets refresh tokens")]
    NotInteractive,
    /// None of its audiences is accepted from its issuer any more.
    #[error("the refresh token's audience is no longer accepted from its issuer")]
    AudienceGone,
}

impl Auth {
    pub(super) fn refresh_audience(&self) -> String {
        format!("{}#refresh", self.service)
    }

    /// Re-checks a verified refresh token against the policy and the issuers in force now.
    pub(super) fn check_refresh(&self, r: RefreshClaims) -> Result<Verified, RefreshError> {
        let policy = self.policy();
        if policy.revoked_refresh_tokens.contains(&r.jti) {
            return Err(RefreshError::Revoked);
        }
        if policy.revoked_refresh_families.contains(&r.fam) {
            return Err(RefreshError::FamilyRevoked);
        }
        if policy
            .refresh_tokens_not_before
            .is_some_and(|nb| r.iat < nb)
        {
            return Err(RefreshError::CutOff);
        }
        let issuer = self.oidc.issuer(&r.idp).ok_or(RefreshError::IssuerGone)?;
        if !issuer.interactive {
            return Err(RefreshError::NotInteractive);
        }
        if !r.idp_aud.iter().any(|a| issuer.audiences.contains(a)) {
            return Err(RefreshError::AudienceGone);
        }
        Ok(Verified {
            identity: Identity {
                issuer: r.idp,
                subject: r.sub,
                audiences: r.idp_aud,
                claims: r.claims,
            },
            family: Some(RefreshFamily {
                id: r.fam,
                expires: r.exp,
            }),
        })
    }

    /// Whether `identity`'s issuer is configured as interactive (its people may hold refresh
    /// tokens).
    pub fn issues_refresh_to(&self, identity: &Identity) -> bool {
        self.oidc
            .issuer(&identity.issuer)
            .is_some_and(|i| i.interactive)
    }

    /// Issues a refresh token bound to `identity`: in `family` when the credential presented was
    /// a refresh token (same family id, never a later expiry), else the first of a new family.
    /// `None` when the identity's issuer is not interactive: the Docker token spec makes
    /// `refresh_token` optional, so such a caller simply gets none.
    pub fn issue_refresh(
        &self,
        identity: &Identity,
        family: Option<&RefreshFamily>,
    ) -> Result<Option<(String, RefreshFamily)>, TokenError> {
        if !self.issues_refresh_to(identity) {
            return Ok(None);
        }
        let now = now();
        let cap = now + self.refresh_ttl.as_secs();
        let family = match family {
            Some(f) => RefreshFamily {
                id: f.id.clone(),
                expires: f.expires.min(cap),
            },
            None => RefreshFamily {
                id: new_jti(),
                expires: cap,
            },
        };
        let claims = RefreshClaims {
            iss: self.service.clone(),
            sub: identity.subject.clone(),
            aud: self.refresh_audience(),
            exp: family.expires,
            iat: now,
            jti: new_jti(),
            fam: family.id.clone(),
            idp: identity.issuer.clone(),
            idp_aud: identity.audiences.clone(),
            claims: identity.claims.clone(),
        };
        Ok(Some((self.keys.sign(&claims)?, family)))
    }
}
