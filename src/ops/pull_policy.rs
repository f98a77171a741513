//! When `bundle` pulls the images of the plan: the `--pull` option, which the bundle job's
//! decisions take as input.

use clap::ValueEnum;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PullPolicy {
    /// Pull only images the engine does not have.
    Missing,
    /// Pull every image, even when the engine has one under that name.
    Always,
    /// Never pull; fail if an image is missing.
    Never,
}
