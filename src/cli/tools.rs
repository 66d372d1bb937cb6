//! The commands around the operator: the CI gate (`check`), reports, the model, the CRDs,
//! the burn-rate rule file, and the synthetic exporter of tests and the demo.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use maturity_operator::{api, synthetic};

use super::init_tracing;

/// `value` as `json` (pretty) or `yaml`, ending with a newline.
fn render<T: serde::Serialize>(value: &T, output: &str) -> Result<String, String> {
    match output {
        "json" => serde_json::to_string_pretty(value)
            .map(|s| s + "\n")
            .map_err(|e| e.to_string()),
        _ => serde_saphyr::to_string(value).map_err(|e| e.to_string()),
    }
}

/// `check`: the assessment's level against --min-level (or its targetLevel).
pub async fn check(
    assessment: String,
    namespace: Option<String>,
    min_level: Option<i32>,
    max_age: std::time::Duration,
    output: &str,
) -> ExitCode {
    let client = match kube::Client::try_default().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("maturity-operator check: cannot build a Kubernetes client: {e}");
            return ExitCode::from(maturity_operator::check::EXIT_UNKNOWN);
        }
    };
    let namespace = namespace.unwrap_or_else(|| client.default_namespace().to_string());
    let verdict =
        maturity_operator::check::check(client, &namespace, &assessment, min_level, max_age).await;
    match output {
        "table" => print!("{}", verdict.text),
        _ => match render(&verdict.object(), output) {
            Ok(text) => print!("{text}"),
            Err(e) => {
                eprintln!("maturity-operator check: cannot print the verdict: {e}");
                return ExitCode::from(maturity_operator::check::EXIT_UNKNOWN);
            }
        },
    }
    ExitCode::from(verdict.code)
}

/// `canary`: sets the policy's order annotation (a new value: the time makes it one) and
/// waits for status to answer it.
pub async fn canary(
    order: String,
    policy: String,
    deployment: Option<String>,
    namespace: Option<String>,
    wait: std::time::Duration,
) -> ExitCode {
    use maturity_operator::api::CanaryPolicy;
    use maturity_operator::api::names::CANARY_CONTROL_ANNOTATION;
    let given = async {
        let client = kube::Client::try_default()
            .await
            .map_err(|e| format!("cannot build a Kubernetes client: {e}"))?;
        let namespace = namespace.unwrap_or_else(|| client.default_namespace().to_string());
        let api: kube::Api<CanaryPolicy> = kube::Api::namespaced(client, &namespace);
        let p = api
            .get_opt(&policy)
            .await
            .map_err(|e| format!("cannot read CanaryPolicy {namespace}/{policy}: {e}"))?
            .ok_or_else(|| format!("no CanaryPolicy {namespace}/{policy}"))?;
        let deployment = match deployment {
            Some(d) => d,
            None => {
                let running: Vec<String> = p
                    .status
                    .iter()
                    .flat_map(|s| &s.rollouts)
                    .filter(|r| !r.phase.is_terminal())
                    .map(|r| r.deployment.clone())
                    .collect();
                match running.as_slice() {
                    [one] => one.clone(),
                    [] => return Err(format!("CanaryPolicy {namespace}/{policy} has no rollout under way")),
                    many => return Err(format!("CanaryPolicy {namespace}/{policy} has rollouts of {} under way: name one with --deployment", many.join(", "))),
                }
            }
        };
        let value = format!("{order} {deployment} {}", maturity_operator::clock::Clock::system().now());
        let patch = serde_json::json!({"metadata": {"annotations": {CANARY_CONTROL_ANNOTATION: value}}});
        api.patch(&policy, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch))
            .await
            .map_err(|e| format!("cannot annotate CanaryPolicy {namespace}/{policy}: {e}"))?;
        let deadline = std::time::Instant::now() + wait;
        loop {
            let answer = api
                .get_opt(&policy)
                .await
                .ok()
                .flatten()
                .and_then(|p| p.status)
                .and_then(|s| s.last_control)
                .filter(|c| c.request == value);
            if let Some(c) = answer {
                return Ok(c);
            }
            if std::time::Instant::now() >= deadline {
                return Err(format!(
                    "the operator did not answer `{value}` within {} (is it running?)",
                    maturity_operator::duration::format_duration(wait)
                ));
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    }
    .await;
    match given {
        Ok(c) if c.done => {
            println!("{}", c.outcome);
            ExitCode::SUCCESS
        }
        Ok(c) => {
            eprintln!("maturity-operator canary: {}", c.outcome);
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("maturity-operator canary: {e}");
            ExitCode::from(3)
        }
    }
}

/// `report`: the latest weekly or monthly report from the assessment's ConfigMap.
pub async fn report(
    assessment: String,
    namespace: Option<String>,
    period: String,
    output: &str,
) -> ExitCode {
    let key = format!(
        "{period}.{}",
        if output == "markdown" { "md" } else { "json" }
    );
    let text = async {
        let client = kube::Client::try_default()
            .await
            .map_err(|e| format!("cannot build a Kubernetes client: {e}"))?;
        let namespace = namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_string());
        let cms: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
            kube::Api::namespaced(client, &namespace);
        let name = api::names::report_config_map(&assessment);
        let cm = cms
            .get_opt(&name)
            .await
            .map_err(|e| format!("cannot read ConfigMap {namespace}/{name}: {e}"))?
            .ok_or_else(|| format!("no report yet: ConfigMap {namespace}/{name} does not exist (enable spec.reports or annotate maturity.sre.dev/report-now)"))?;
        let text = cm
            .data
            .and_then(|d| d.get(&key).cloned())
            .ok_or_else(|| format!("no {period} report in ConfigMap {namespace}/{name} yet"))?;
        match output {
            "yaml" => {
                let value: serde_json::Value = serde_json::from_str(&text)
                    .map_err(|e| format!("the {period} report in ConfigMap {namespace}/{name} is not JSON: {e}"))?;
                render(&value, "yaml")
            }
            _ => Ok(text),
        }
    }
    .await;
    match text {
        Ok(t) => {
            print!("{t}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("maturity-operator report: {e}");
            ExitCode::from(maturity_operator::check::EXIT_UNKNOWN)
        }
    }
}

/// `synthetic-exporter`: serves steady synthetic traffic until Ctrl-C.
pub async fn synthetic_exporter(
    addr: SocketAddr,
    series: Vec<(synthetic::Labels, synthetic::Traffic)>,
    follow_namespace: Option<String>,
    image_errors: Vec<(String, Option<f64>)>,
) -> ExitCode {
    let _telemetry = init_tracing(&super::LogArgs::default());
    let exporter = match synthetic::SyntheticExporter::start(addr).await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("maturity-operator synthetic-exporter: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    for (labels, traffic) in series {
        exporter.set_traffic(labels, traffic);
    }
    tracing::info!(addr = %exporter.addr(), "synthetic exporter serving /metrics");
    let exporter = std::sync::Arc::new(exporter);
    if let Some(ns) = follow_namespace {
        let client = match kube::Client::try_default().await {
            Ok(c) => c,
            Err(e) => {
                eprintln!(
                    "maturity-operator synthetic-exporter: cannot build a Kubernetes client for --follow-namespace: {e}"
                );
                return ExitCode::FAILURE;
            }
        };
        let behaviour = synthetic::follow::Behaviour {
            rules: image_errors,
        };
        tokio::spawn(synthetic::follow::follow(
            client,
            ns,
            exporter.clone(),
            behaviour,
        ));
    }
    let _ = tokio::signal::ctrl_c().await;
    ExitCode::SUCCESS
}

pub fn model_text(output: &str) -> String {
    use maturity_operator::model::{Capability, PRACTICES, level_name, markdown};
    match output {
        "json" | "yaml" => render(&PRACTICES, output).unwrap_or_default(),
        "markdown" => markdown(),
        _ => {
            let mut out = String::new();
            for c in Capability::ALL {
                out.push_str(&format!("{} {} ({})\n", c.id(), c.title(), c.title_zh()));
                for p in PRACTICES.iter().filter(|p| p.capability == c) {
                    out.push_str(&format!(
                        "  {:<8} L{} {:<22} {:<9} {:>4}d {}\n",
                        p.id,
                        p.level,
                        level_name(p.level),
                        format!("{:?}", p.evidence),
                        p.max_validity_days(),
                        p.title
                    ));
                    // The signal it is measured from, or what an attestation shows.
                    let how = if p.signal.is_empty() {
                        p.attestation
                    } else {
                        p.signal
                    };
                    if !how.is_empty() {
                        out.push_str(&format!("{:>48}{how}\n", ""));
                    }
                }
            }
            out
        }
    }
}

pub fn parse_series(s: &str) -> Result<(synthetic::Labels, synthetic::Traffic), String> {
    let parts: Vec<&str> = s.split(':').collect();
    let [labels, rps, err, lat] = parts.as_slice() else {
        return Err(format!(
            "{s:?}: expected labels:rps:error_ratio:latency_seconds, e.g. service=checkout:20:0.01:0.05"
        ));
    };
    let mut l = synthetic::Labels::new();
    for pair in labels.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| format!("{pair:?} is not label=value"))?;
        l.insert(k.to_string(), v.to_string());
    }
    let num = |x: &str, what: &str| {
        x.parse::<f64>()
            .map_err(|_| format!("{what} {x:?} is not a number"))
    };
    Ok((
        l,
        synthetic::Traffic::steady(
            num(rps, "rps")?,
            num(err, "error ratio")?,
            num(lat, "latency")?,
        ),
    ))
}

/// Prints the rules of the targets in `files`: one rule file, or (`objects`: the configured
/// rule labels) one PrometheusRule per target as the operator writes it.
pub fn print_rules(
    files: &[PathBuf],
    namespace: &str,
    tenancy: &maturity_operator::prom::enforce::Tenancy,
    objects: Option<std::collections::BTreeMap<String, String>>,
    output: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    use maturity_operator::api::ResponseTimeTarget;
    let mut targets = Vec::new();
    // The files as `validate` reads them (a directory's YAML files too, `-` stdin).
    for (shown, text) in manifests(files) {
        let text = text?;
        let docs: Vec<serde_json::Value> =
            serde_saphyr::from_multiple(&text).map_err(|e| format!("{shown} is not YAML: {e}"))?;
        for value in docs {
            if value.get("kind").and_then(|k| k.as_str()) != Some("ResponseTimeTarget") {
                continue;
            }
            let mut target: ResponseTimeTarget = serde_json::from_value(value)
                .map_err(|e| format!("{shown}: not a valid ResponseTimeTarget: {e}"))?;
            if target.metadata.namespace.is_none() {
                target.metadata.namespace = Some(namespace.to_string());
            }
            targets.push(target);
        }
    }
    let names = || {
        files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some(labels) = objects else {
        let rules = maturity_operator::slo::rules::rule_file(&targets, tenancy)?;
        if rules.groups.is_empty() {
            return Err(format!(
                "nothing to write: no ResponseTimeTarget in {} has alerting (spec.alerting)",
                names()
            )
            .into());
        }
        print!("{}", render(&rules, output)?);
        return Ok(());
    };
    let mut objects = Vec::new();
    for t in &targets {
        if let Some(object) = maturity_operator::slo::rules::prometheus_rule(t, tenancy, &labels)? {
            objects.push(object);
        }
    }
    if objects.is_empty() {
        return Err(format!(
            "nothing to write: no ResponseTimeTarget in {} has alerting (spec.alerting)",
            names()
        )
        .into());
    }
    match output {
        "json" => print!(
            "{}",
            render(
                &serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects}),
                "json"
            )?
        ),
        _ => {
            for object in &objects {
                print!("---\n{}", render(object, "yaml")?);
            }
        }
    }
    Ok(())
}

/// `validate`: every document of the manifests checked offline; exit 0 all accepted, 1 one
/// refused, 2 a file that cannot be read or parsed.
pub fn validate(
    files: &[PathBuf],
    namespace: &str,
    tenancy: &maturity_operator::prom::enforce::Tenancy,
) -> ExitCode {
    use maturity_operator::validate::{Settings, Validator, Verdict};
    let settings = Settings {
        namespace: namespace.to_string(),
        tenancy: tenancy.clone(),
    };
    let mut validator = Validator::new();
    let (mut refused, mut unreadable) = (false, false);
    for (shown, text) in manifests(files) {
        let text = match text {
            Ok(t) => t,
            Err(e) => {
                eprintln!("maturity-operator validate: {e}");
                unreadable = true;
                continue;
            }
        };
        let docs = match validator.text(&text, &settings) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("maturity-operator validate: {shown} is {e}");
                unreadable = true;
                continue;
            }
        };
        for doc in docs {
            for field in &doc.pruned {
                eprintln!(
                    "{shown}: {} {}: unknown field \"{field}\" (dropped by the API server; kubectl --validate=strict refuses it)",
                    doc.kind, doc.name
                );
            }
            match doc.verdict {
                Verdict::Valid => println!("{shown}: {} {} is valid", doc.kind, doc.name),
                Verdict::Refused { lines, .. } => {
                    refused = true;
                    for line in lines {
                        println!("{shown}: {line}");
                    }
                }
                Verdict::Skipped(why) => eprintln!("{shown}: skipped: {why}"),
            }
        }
    }
    match (unreadable, refused) {
        (true, _) => ExitCode::from(2),
        (false, true) => ExitCode::from(1),
        (false, false) => ExitCode::SUCCESS,
    }
}

/// The manifests named: each file as given, a directory's *.yaml and *.yml files sorted,
/// `-` stdin; with the text of each or a sentence saying why it could not be read.
fn manifests(files: &[PathBuf]) -> Vec<(String, Result<String, String>)> {
    let read = |f: &std::path::Path| {
        std::fs::read_to_string(f).map_err(|e| format!("cannot read {}: {e}", f.display()))
    };
    let mut out = Vec::new();
    for file in files {
        if file.as_os_str() == "-" {
            let text = std::io::read_to_string(std::io::stdin())
                .map_err(|e| format!("cannot read stdin: {e}"));
            out.push(("-".to_string(), text));
        } else if file.is_dir() {
            let entries = match std::fs::read_dir(file) {
                Ok(e) => e,
                Err(e) => {
                    let why = format!("cannot read the directory {}: {e}", file.display());
                    out.push((file.display().to_string(), Err(why)));
                    continue;
                }
            };
            let mut paths: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect();
            paths.sort();
            for p in paths {
                out.push((p.display().to_string(), read(&p)));
            }
        } else {
            out.push((file.display().to_string(), read(file)));
        }
    }
    out
}

pub fn write_crds(
    out_dir: Option<PathBuf>,
    output: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    match out_dir {
        None if output == "json" => {
            let items: Vec<_> = api::crds().into_iter().map(|(_, crd)| crd).collect();
            let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
            print!("{}", render(&list, "json")?);
        }
        None => print!("{}", api::all_crds_yaml()?),
        Some(dir) => {
            std::fs::create_dir_all(&dir)?;
            for (file, crd) in api::crds() {
                std::fs::write(dir.join(file), api::crd_yaml(&crd)?)?;
            }
        }
    }
    Ok(())
}
