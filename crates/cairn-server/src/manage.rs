//! `cairn identity …`, `cairn token …`, `cairn namespace …` and
//! `cairn admin-log`: administration from the command line. They act as the
//! local operator (`cli` in the admin audit log) with the registry's store
//! and operator key, whether or not a server is running.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use cairn_crypto::{EcdsaPublicKey, KeyId};
use cairn_protocol::ext::registry::{IdentityKind, PublishPolicy, TrustedPublisher, Upstream};
use cairn_service::admin::{NamespaceSettings, parse_actions};
use cairn_service::identity::TokenScope;
use cairn_store::IdentityStore as _;

use crate::admin::AdminSession;
use crate::config::{self, IdentityCommand, NamespaceCommand, StoreArgs, TokenCommand};

async fn session(store: &StoreArgs) -> anyhow::Result<AdminSession> {
    AdminSession::open(&config::resolve_store(store)?).await
}

/// Runs `f` in an admin session and closes it whatever happens.
macro_rules! with_session {
    ($store:expr, |$s:ident| $body:expr) => {{
        let $s = session($store).await?;
        let result: anyhow::Result<()> = async { $body }.await;
        $s.close().await;
        result?;
        Ok(ExitCode::SUCCESS)
    }};
}

/// `cairn identity …`.
pub async fn identity(command: IdentityCommand) -> anyhow::Result<ExitCode> {
    match command {
        IdentityCommand::Create { name, robot, store } => with_session!(&store, |s| {
            let kind = if robot {
                IdentityKind::Robot
            } else {
                IdentityKind::User
            };
            s.ctx().create_identity(&name, kind).await?;
            println!("identity `{name}` created");
            Ok(())
        }),
        IdentityCommand::List { store } => with_session!(&store, |s| {
            let log = s.ctx().registry_log().await?;
            for (name, identity) in log.identities() {
                println!(
                    "{name}\t{}{}",
                    serde_json::to_value(identity.kind)?
                        .as_str()
                        .unwrap_or_default(),
                    if identity.disabled { "\tdisabled" } else { "" }
                );
                for key_id in &identity.keys {
                    println!("  key {key_id}");
                }
            }
            Ok(())
        }),
        IdentityCommand::Disable { name, store } => with_session!(&store, |s| {
            let revoked = s.ctx().disable_identity(&name).await?;
            println!("identity `{name}` disabled; {revoked} tokens revoked");
            Ok(())
        }),
        IdentityCommand::AddKey { name, key, store } => with_session!(&store, |s| {
            let key: EcdsaPublicKey = key
                .parse()
                .map_err(|e| anyhow::anyhow!("--key is not an ecdsa-p256 public key: {e}"))?;
            s.ctx().bind_key(&name, &key).await?;
            println!("key {} bound to `{name}`", key.key_id());
            Ok(())
        }),
        IdentityCommand::RemoveKey {
            name,
            key_id,
            store,
        } => with_session!(&store, |s| {
            s.ctx()
                .unbind_key(&name, &KeyId::new(key_id.clone()))
                .await?;
            println!("key {key_id} unbound from `{name}`");
            Ok(())
        }),
    }
}

/// `cairn token …`.
pub async fn token(command: TokenCommand) -> anyhow::Result<ExitCode> {
    match command {
        TokenCommand::Create {
            identity,
            namespaces,
            actions,
            expires_in_days,
            description,
            store,
        } => with_session!(&store, |s| {
            let scope = TokenScope {
                namespaces,
                actions: parse_actions(&actions)?,
            };
            let expires = expires_in_days.map(|d| Duration::from_secs(d * 86_400));
            let token = s
                .ctx()
                .create_token(&identity, &scope, expires, &description)
                .await?;
            eprintln!(
                "token {} for `{identity}` created; it is shown once, store it now:",
                token.row.id
            );
            println!("{}", token.secret);
            Ok(())
        }),
        TokenCommand::List { identity, store } => with_session!(&store, |s| {
            for token in s.store().tokens(identity.as_deref()).await? {
                let state = if token.revoked_at_ms.is_some() {
                    "revoked"
                } else {
                    "live"
                };
                println!(
                    "{}\t{}\t{}\t{}\t{state}\t{}",
                    token.id,
                    token.identity,
                    token.namespaces.join(","),
                    token.actions.join(","),
                    token.description
                );
            }
            Ok(())
        }),
        TokenCommand::Revoke { id, store } => with_session!(&store, |s| {
            s.ctx().revoke_token(&id).await?;
            println!("token {id} revoked");
            Ok(())
        }),
    }
}

/// `cairn namespace …`.
pub async fn namespace(command: NamespaceCommand) -> anyhow::Result<ExitCode> {
    match command {
        NamespaceCommand::Create {
            namespace,
            owners,
            open,
            upstream,
            upstream_prefix,
            store,
        } => with_session!(&store, |s| {
            let settings = NamespaceSettings {
                owners,
                open,
                upstream: upstream.map(|registry| Upstream {
                    registry: registry.trim_end_matches('/').to_owned(),
                    prefix: upstream_prefix,
                }),
                ..NamespaceSettings::default()
            };
            s.ctx().set_namespace(&namespace, settings).await?;
            println!("namespace `{namespace}` created");
            Ok(())
        }),
        NamespaceCommand::Show { namespace, store } => with_session!(&store, |s| {
            let log = s.ctx().registry_log().await?;
            let entry = log
                .namespace(&namespace)
                .with_context(|| format!("namespace `{namespace}` has no ownership record"))?;
            println!("{}", serde_json::to_string_pretty(entry)?);
            Ok(())
        }),
        NamespaceCommand::Members {
            namespace,
            add_owner,
            remove_owner,
            add_publisher,
            remove_publisher,
            store,
        } => with_session!(&store, |s| {
            s.ctx()
                .edit_members(
                    &namespace,
                    (&add_owner, &remove_owner),
                    (&add_publisher, &remove_publisher),
                )
                .await?;
            println!("namespace `{namespace}` updated");
            Ok(())
        }),
        NamespaceCommand::Policy {
            namespace,
            max_bytes,
            allow_modules,
            allow_other,
            no_name_check,
            allow_import,
            deny_import,
            immutable_tags,
            signature_key,
            signature_identity,
            require_signature,
            require_attestation,
            store,
        } => with_session!(&store, |s| {
            if let Some(bad) = immutable_tags
                .iter()
                .find(|p| !cairn_protocol::ext::registry::is_valid_tag_pattern(p))
            {
                anyhow::bail!(
                    "--immutable-tags `{bad}`: use tag characters (A-Z a-z 0-9 . _ -) and `*`"
                );
            }
            for rule in &signature_identity {
                cairn_sigstore::IdentityRule::parse(rule)
                    .map_err(|e| anyhow::anyhow!("--signature-identity: {e}"))?;
            }
            let policy = PublishPolicy {
                max_bytes,
                allow_modules,
                allow_other,
                name_must_match: !no_name_check,
                imports_allow: allow_import,
                imports_deny: deny_import,
                immutable_tags,
                signature_keys: signature_key
                    .iter()
                    .map(|path| {
                        let pem = std::fs::read_to_string(path).with_context(|| {
                            format!("--signature-key {}: cannot read it", path.display())
                        })?;
                        cairn_sigstore::PublicKey::from_pem(&pem).map_err(|e| {
                            anyhow::anyhow!(
                                "--signature-key {}: {e} (expected a PEM `PUBLIC KEY`, as \
                                 `cosign generate-key-pair` writes cosign.pub)",
                                path.display()
                            )
                        })?;
                        Ok(pem)
                    })
                    .collect::<anyhow::Result<_>>()?,
                signature_identities: signature_identity,
                require_signature,
                require_attestations: require_attestation,
            };
            s.ctx()
                .update_namespace(&namespace, false, |settings| {
                    settings.policy = policy.clone();
                    Ok(())
                })
                .await?;
            println!("policy of `{namespace}` set");
            Ok(())
        }),
        NamespaceCommand::Trust {
            namespace,
            identity,
            issuer,
            claims,
            store,
        } => with_session!(&store, |s| {
            let claims = claims
                .iter()
                .map(|c| {
                    c.split_once('=')
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .with_context(|| format!("--claim `{c}` is not name=value"))
                })
                .collect::<anyhow::Result<BTreeMap<_, _>>>()?;
            let ctx = s.ctx();
            let rule = TrustedPublisher {
                identity: identity.clone(),
                issuer,
                claims,
            };
            // Checked before a missing identity is created, so a refused
            // rule leaves nothing behind; an existing identity must already
            // be a dedicated trusted-publisher one. `update_namespace`
            // checks the whole settings again when it records them.
            cairn_service::oidc::check_trust_rule(&rule)?;
            let current = ctx.namespace_settings(&namespace).await?;
            let registry = ctx.registry_log().await?;
            if registry.identity(&identity).is_some() {
                cairn_service::oidc::validate_trusted_publishers(
                    &registry,
                    &current.owners,
                    &current.publishers,
                    std::slice::from_ref(&rule),
                )?;
            } else {
                ctx.create_identity(&identity, IdentityKind::TrustedPublisher)
                    .await?;
            }
            ctx.update_namespace(&namespace, false, |settings| {
                settings
                    .trusted_publishers
                    .retain(|t| !(t.identity == rule.identity && t.issuer == rule.issuer));
                settings.trusted_publishers.push(rule.clone());
                Ok(())
            })
            .await?;
            println!("`{identity}` may publish in `{namespace}` through OIDC");
            Ok(())
        }),
    }
}

/// `cairn admin-log`.
pub async fn admin_log(after: Option<i64>, store: StoreArgs) -> anyhow::Result<ExitCode> {
    let settings = config::resolve_store(&store)?;
    let store = cairn_store::SqlStore::connect(&settings.database_url, 2)
        .await
        .with_context(|| format!("cannot open database {}", settings.database_display()))?;
    let mut after = after;
    loop {
        let page = store.audit(after, 1000).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.seq);
        for entry in &page {
            println!(
                "{}\t{}\t{}\t{}\t{}",
                entry.seq, entry.at_ms, entry.actor, entry.action, entry.details
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `cairn content …`: withholding content (see `ops/withholding.md`).
pub async fn content(command: crate::config::ContentCommand) -> anyhow::Result<ExitCode> {
    use cairn_service::withhold::parse_content_digest;

    use crate::config::ContentCommand;
    match command {
        ContentCommand::Withhold {
            digest,
            reason,
            store,
        } => with_session!(&store, |s| {
            let digest = parse_content_digest(&digest)?;
            let record = s.ctx().withhold_content(&digest, &reason).await?;
            println!("content {digest} withheld (record {record}); every door answers 451");
            println!("run `cairn gc --apply` to delete its stored bytes");
            Ok(())
        }),
        ContentCommand::Restore { digest, store } => with_session!(&store, |s| {
            let digest = parse_content_digest(&digest)?;
            let record = s.ctx().restore_content(&digest).await?;
            let settings = config::resolve_store(&store)?;
            let stored = match crate::blobs::open_existing(&settings).await {
                Ok(blobs) => blobs.stat(&digest).await?.is_some(),
                Err(_) => false,
            };
            if stored {
                println!("content {digest} restored (record {record}); it is served again");
            } else {
                println!(
                    "content {digest} restored (record {record}), but its bytes are not stored \
                     (deleted by `cairn gc`?): it stays unavailable until the same bytes are \
                     pushed again"
                );
            }
            Ok(())
        }),
        ContentCommand::List { store } => with_session!(&store, |s| {
            let log = s.ctx().registry_log().await?;
            for entry in log.withheld_all() {
                println!(
                    "{}\t{}\t{}",
                    entry.digest,
                    entry.by.identity,
                    entry.reason.replace(['\n', '\t'], " ")
                );
            }
            Ok(())
        }),
    }
}
