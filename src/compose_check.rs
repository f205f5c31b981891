//! docker-compose.yml is checked against the real CLI: there is no container engine on the
//! machines that build busflow, so this test is what keeps the file from rotting.

use std::collections::BTreeMap;

use clap::CommandFactory;
use serde::Deserialize;

use crate::cli::Cli;

#[derive(Debug, Deserialize)]
struct Compose {
    services: BTreeMap<String, Service>,
    #[serde(default)]
    volumes: BTreeMap<String, Option<serde_norway::Value>>,
}

#[derive(Debug, Deserialize)]
struct Service {
    image: Option<String>,
    build: Option<serde_norway::Value>,
    command: Option<Vec<String>>,
    #[serde(default)]
    environment: BTreeMap<String, String>,
    #[serde(default)]
    ports: Vec<String>,
    #[serde(default)]
    volumes: Vec<String>,
    healthcheck: Option<serde_norway::Value>,
    #[serde(default)]
    depends_on: BTreeMap<String, serde_norway::Value>,
}

fn compose() -> Compose {
    let text = include_str!("../docker-compose.yml");
    match serde_norway::from_str(text) {
        Ok(c) => c,
        Err(e) => panic!("docker-compose.yml does not parse: {e}"),
    }
}

/// Environment variables a (sub)command reads: its own args plus global ones.
fn envs_of(cmd: &clap::Command, global: &clap::Command) -> Vec<String> {
    cmd.get_arguments()
        .chain(global.get_arguments())
        .filter_map(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
        .collect()
}

#[test]
fn busflow_services_match_the_cli() {
    let c = compose();
    let cli = Cli::command();
    let mut busflow_services = 0;
    for (name, svc) in &c.services {
        let is_busflow = svc.image.as_deref().is_some_and(|i| i.starts_with("busflow"));
        if !is_busflow {
            continue;
        }
        busflow_services += 1;
        let command = svc.command.as_ref().unwrap_or_else(|| panic!("{name}: no command"));
        let sub = cli
            .find_subcommand(&command[0])
            .unwrap_or_else(|| panic!("{name}: `busflow {}` is not a subcommand", command[0]));
        // Flags given on the command line must exist.
        for arg in command.iter().skip(1).filter(|a| a.starts_with("--")) {
            let flag = arg.trim_start_matches("--").split('=').next().unwrap_or_default();
            assert!(
                sub.get_arguments().chain(cli.get_arguments()).any(|a| a.get_long() == Some(flag)),
                "{name}: busflow {} has no flag --{flag}",
                command[0]
            );
        }
        let envs = envs_of(sub, &cli);
        for var in svc.environment.keys() {
            assert!(envs.contains(var), "{name}: busflow {} does not read {var}", command[0]);
        }
        assert!(
            svc.environment.contains_key("KAFKA_BROKERS"),
            "{name}: must point at the compose Kafka"
        );
        for dep in svc.depends_on.keys() {
            assert!(c.services.contains_key(dep), "{name}: depends on unknown service {dep}");
        }
        // A published port must be the one the service listens on.
        for p in &svc.ports {
            let container_port = p.rsplit(':').next().unwrap_or_default();
            let listens = svc
                .environment
                .iter()
                .filter(|(k, _)| k.ends_with("_ADDR"))
                .any(|(_, v)| v.rsplit(':').next() == Some(container_port));
            assert!(listens, "{name}: publishes {p} but listens on no such port");
            let bind_all =
                svc.environment.get("BUSFLOW_HTTP_ADDR").is_some_and(|v| v.starts_with("0.0.0.0:"));
            assert!(bind_all, "{name}: a published port needs BUSFLOW_HTTP_ADDR=0.0.0.0:PORT");
        }
    }
    assert!(busflow_services >= 3, "expected simulator, pipeline and gateway services");
    for name in ["simulator", "pipeline", "gateway", "kafka"] {
        assert!(c.services.contains_key(name), "missing service {name}");
    }
    let gw = &c.services["gateway"];
    assert!(gw.ports.iter().any(|p| p.starts_with("8080:")), "gateway must publish 8080");
    assert!(gw.healthcheck.is_some(), "gateway needs a health check");
}

#[test]
fn kafka_is_single_node_kraft_with_a_volume() {
    let c = compose();
    let k = &c.services["kafka"];
    assert!(k.image.as_deref().is_some_and(|i| i.starts_with("apache/kafka:")));
    assert_eq!(
        k.environment.get("KAFKA_PROCESS_ROLES").map(String::as_str),
        Some("broker,controller")
    );
    let vol = k.volumes.first().and_then(|v| v.split(':').next()).unwrap_or_default();
    assert!(c.volumes.contains_key(vol), "kafka data volume {vol:?} is not declared");
    assert!(k.healthcheck.is_some());
    let built = c.services.values().filter(|s| s.build.is_some()).count();
    assert_eq!(built, 1, "build the image once, reuse it for the other services");
}
