//! One CLI option per sampling parameter of the core's table (`--repeat-last-n`,
//! `--dry-multiplier`, `--xtc-probability`…), built from `conclave_core::settings`, so a
//! parameter added there is on the command line with its help and range, with no code here.

use clap::{Arg, ArgMatches, Args, Command, FromArgMatches};
use conclave_core::settings::{set_sampling, SamplingField, SAMPLING_FIELDS};
use conclave_core::SamplingParams;

/// Parameters with their own, older options (`--temp`, `--top-k`…).
const OWN_OPTIONS: &[&str] = &["temperature", "top_k", "top_p", "min_p", "repeat_penalty"];

fn fields() -> impl Iterator<Item = &'static SamplingField> {
    SAMPLING_FIELDS
        .iter()
        .filter(|f| !OWN_OPTIONS.contains(&f.key))
}

/// The values given, each already checked against its range.
#[derive(Debug, Clone, Default)]
pub struct SamplingFlags(Vec<(&'static str, f64)>);

impl SamplingFlags {
    /// Puts every given value over `p`.
    pub fn apply(&self, p: &mut SamplingParams) -> anyhow::Result<()> {
        for (key, v) in &self.0 {
            set_sampling(p, key, *v).map_err(anyhow::Error::msg)?;
        }
        Ok(())
    }
}

impl FromArgMatches for SamplingFlags {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let mut out = Vec::new();
        let mut probe = SamplingParams::default();
        for f in fields() {
            if let Some(v) = m.get_one::<f64>(f.key) {
                set_sampling(&mut probe, f.key, *v).map_err(|msg| {
                    clap::Error::raw(
                        clap::error::ErrorKind::ValueValidation,
                        format!("--{}: {msg}\n", f.flag),
                    )
                })?;
                out.push((f.key, *v));
            }
        }
        Ok(Self(out))
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

impl Args for SamplingFlags {
    fn augment_args(cmd: Command) -> Command {
        fields().fold(cmd, |cmd, f| {
            cmd.arg(
                Arg::new(f.key)
                    .long(f.flag)
                    .value_name("N")
                    .value_parser(clap::value_parser!(f64))
                    .allow_negative_numbers(true)
                    .help(format!("{} ({} to {})", f.help, f.min, f.max)),
            )
        })
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}
