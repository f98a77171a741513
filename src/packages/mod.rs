//! Python wheels and npm tarballs on the far side: where they come from and the server that
//! hands them to an unchanged `pip install` or `npm ci`.

pub mod render;
pub mod serve;
pub mod source;
