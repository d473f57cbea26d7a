//! `--config FILE`: a YAML map of setting name → value, folded into the
//! command line for settings neither the command line nor the environment
//! gave.

use super::*;

pub(super) fn fold_config_file(mut args: Vec<String>) -> Result<Vec<String>, String> {
    let Some(pos) = args
        .iter()
        .position(|a| a == "--config" || a.starts_with("--config="))
    else {
        return Ok(args);
    };
    let path = if let Some(p) = args[pos].strip_prefix("--config=") {
        let p = p.to_string();
        args.remove(pos);
        p
    } else {
        let p = args.get(pos + 1).cloned().ok_or("--config needs a file")?;
        args.drain(pos..=pos + 1);
        p
    };
    let text = std::fs::read_to_string(&path).map_err(|e| format!("--config {path}: {e}"))?;
    let map: std::collections::BTreeMap<String, yaml_serde::Value> =
        yaml_serde::from_str(&text).map_err(|e| format!("--config {path}: {e}"))?;
    // The settings of the subcommand the command line names (however deep),
    // so each file entry becomes the right kind of flag for it.
    use clap::CommandFactory;
    let root = Cli::command();
    let mut command = &root;
    for word in args.iter().skip(1).take_while(|a| !a.starts_with('-')) {
        match command.find_subcommand(word) {
            Some(sub) => command = sub,
            None => break,
        }
    }
    let mut everywhere = std::collections::BTreeSet::new();
    collect_longs(&root, &mut everywhere);
    // Insert where --config stood (after the innermost subcommand, as
    // `issuer keys rotate --config F` reads), so clap gives them to it.
    let insert_at = pos.min(args.len());
    let mut extra = Vec::new();
    for (name, value) in map {
        let Some(arg) = command
            .get_arguments()
            .find(|a| a.get_long() == Some(name.as_str()))
        else {
            // A setting of another subcommand (one file can serve them all);
            // a name no subcommand knows is a typo.
            if everywhere.contains(&name) {
                continue;
            }
            return Err(format!("--config {path}: unknown setting {name}"));
        };
        let flag = format!("--{name}");
        let on_command_line = args
            .iter()
            .any(|a| a == &flag || a.starts_with(&format!("{flag}=")));
        let in_env = arg.get_env().is_some_and(|e| std::env::var_os(e).is_some());
        if on_command_line || in_env {
            continue;
        }
        if !arg.get_action().takes_values() {
            // A switch: `true` is the bare flag, `false` its absence.
            match value {
                yaml_serde::Value::Bool(true) => extra.push(flag),
                yaml_serde::Value::Bool(false) => {}
                _ => return Err(format!("--config {path}: {name} must be true or false")),
            }
            continue;
        }
        let value = match value {
            yaml_serde::Value::String(s) => s,
            yaml_serde::Value::Number(n) => n.to_string(),
            yaml_serde::Value::Bool(b) => b.to_string(),
            _ => return Err(format!("--config {path}: {name} must be a scalar")),
        };
        extra.push(format!("{flag}={value}"));
    }
    args.splice(insert_at..insert_at, extra);
    Ok(args)
}

fn collect_longs(command: &clap::Command, into: &mut std::collections::BTreeSet<String>) {
    for arg in command.get_arguments() {
        if let Some(long) = arg.get_long() {
            into.insert(long.to_string());
        }
    }
    for sub in command.get_subcommands() {
        collect_longs(sub, into);
    }
}
