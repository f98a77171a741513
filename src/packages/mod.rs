//! Python and npm packages: which package files a build's install steps read ([`needs`]), and how
//! a far-side rebuild serves the bundle's packages to them ([`serving`]).

pub mod needs;
pub mod serving;
