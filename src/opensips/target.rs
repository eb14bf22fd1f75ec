//! The OpenSIPS build this module is stamped for, chosen by build.rs (see README).
include!(concat!(env!("OUT_DIR"), "/opensips_target.rs"));
