//! meetgate: a sidecar gateway for removing participants from Huawei Cloud Meeting conferences.

pub mod sim;
