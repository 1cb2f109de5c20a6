//! `retort report`: one self-contained HTML file about a pipeline's last
//! run — the stage graph with each stage's state, every training stage's
//! per-step curves, every evaluation as a table and a chart, the first rows
//! of each dataset, and the lock's fingerprints.
//!
//! [`collect`] reads what the report shows from the plan, the lock and the
//! store into plain data ([`ReportData`]); [`render`] turns that into HTML
//! and touches no file, so the page can be tested from hand-made data.
//! Plots are drawn by `plotters`' SVG backend and inlined: the page fetches
//! nothing (its Content-Security-Policy forbids it) and runs no script.
//! This crate reads the store and lock only; it never loads a model.

mod collect;
mod curves;
mod dag;
mod evals;
mod html;

pub use collect::{collect, Dataset, ReportData, StageInfo, State};
pub use html::{escape, render};

/// Why a report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A plot could not be drawn (plotters' error, as text).
    #[error("cannot draw the {what}: {message}")]
    Draw {
        /// Which plot.
        what: String,
        /// plotters' message.
        message: String,
    },
    /// The cache could not be read.
    #[error(transparent)]
    Cache(#[from] retort_cache::CacheError),
}
