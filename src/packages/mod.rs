//! Python wheels and npm tarballs: which package files a build's install steps read ([`needs`]),
//! what a far-side rebuild must rewrite and check to serve them ([`serving`]), the far side's
//! package store that `load` fills ([`store`]), where served packages come from ([`source`]) and
//! the server that hands them to an unchanged `pip install` or `npm ci` ([`serve`]).

pub mod needs;
pub mod python_lock;
pub mod serve;
pub mod serving;
pub mod source;
pub mod store;
