// SPDX-License-Identifier: GPL-2.0

//! Guest memory regions: the kinds, the HMM mirror of movable RAM, and the
//! pure arithmetic they share.

pub(crate) mod check;
pub(crate) mod geometry;
pub(crate) mod movable;
pub(crate) mod region;
