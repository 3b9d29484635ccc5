// SPDX-License-Identifier: GPL-2.0
//
// The test cases, in the order they run. Each is a function returning
// `TResult`; each releases everything it created (dropping the fds makes the
// driver tear the partition down).

mod bad;
mod ch;
mod concurrency;
mod dev;
pub(crate) mod exits;
mod hardening;
pub(crate) mod irq;
mod leaks;
mod memory;
mod mmio;
mod scenarios;
mod sched;
pub(crate) mod sim;
mod state;
mod trace;

use crate::TestCase;

/// Cases that assert the root scheduler's protocol (DISPATCH_VP, scheduler
/// signal messages): not run when the emulator runs the core scheduler.
pub static ROOT_SCHEDULER_ONLY: &[&str] = &[
    "synic_signal_wakes_new_vp",
    "root_stale_signal_keeps_vp_waiting",
];

/// Cases that assert the hypervisor (core) scheduler's protocol (suspend
/// registers, opaque intercepts): not run under the root scheduler.
pub static CORE_SCHEDULER_ONLY: &[&str] = &[
    "core_every_exit_is_one_opaque_intercept",
    "core_kick_in_flight_survives_signal",
    "core_eintr_leaves_vp_explicitly_suspended",
];

pub static ALL: &[TestCase] = &[
    TestCase {
        name: "dev_node_mode",
        func: dev::dev_node_mode,
        timeout: 30,
    },
    TestCase {
        name: "dev_nonroot_refused",
        func: dev::dev_nonroot_refused,
        timeout: 30,
    },
    TestCase {
        name: "create_partition_and_vp",
        func: dev::create_partition_and_vp,
        timeout: 60,
    },
    TestCase {
        name: "unload_refused_while_partition_lives",
        func: dev::unload_refused_while_partition_lives,
        timeout: 60,
    },
    TestCase {
        name: "bad_create_partition",
        func: bad::bad_create_partition,
        timeout: 60,
    },
    TestCase {
        name: "bad_create_vp",
        func: bad::bad_create_vp,
        timeout: 60,
    },
    TestCase {
        name: "bad_set_guest_memory",
        func: bad::bad_set_guest_memory,
        timeout: 60,
    },
    TestCase {
        name: "bad_root_hvcall",
        func: bad::bad_root_hvcall,
        timeout: 60,
    },
    TestCase {
        name: "root_hvcall_isolation",
        func: bad::root_hvcall_isolation,
        timeout: 60,
    },
    TestCase {
        name: "guest_io_and_halt",
        func: exits::guest_io_and_halt,
        timeout: 60,
    },
    TestCase {
        name: "vp_mmap_offsets",
        func: exits::vp_mmap_offsets,
        timeout: 60,
    },
    TestCase {
        name: "guest_pattern_movable",
        func: memory::guest_pattern_movable,
        timeout: 900,
    },
    TestCase {
        name: "guest_pattern_pinned",
        func: memory::guest_pattern_pinned,
        timeout: 900,
    },
    TestCase {
        name: "dontneed_refaults_zero",
        func: memory::dontneed_refaults_zero,
        timeout: 300,
    },
    TestCase {
        name: "munmap_behind_driver",
        func: memory::munmap_behind_driver,
        timeout: 300,
    },
    TestCase {
        name: "thp_unaligned_gets_2m",
        func: memory::thp_unaligned_gets_2m,
        timeout: 300,
    },
    TestCase {
        name: "thp_pinned_gets_2m",
        func: memory::thp_pinned_gets_2m,
        timeout: 300,
    },
    TestCase {
        name: "uffd_postcopy_fill",
        func: memory::uffd_postcopy_fill,
        timeout: 30,
    },
    TestCase {
        name: "readonly_region",
        func: exits::readonly_region,
        timeout: 120,
    },
    TestCase {
        name: "nonexec_region_fetch_intercept",
        func: exits::nonexec_region_fetch_intercept,
        timeout: 60,
    },
    TestCase {
        name: "unmapped_gpa_exit",
        func: exits::unmapped_gpa_exit,
        timeout: 120,
    },
    TestCase {
        name: "unsupported_opcode_exit",
        func: exits::unsupported_opcode_exit,
        timeout: 60,
    },
    TestCase {
        name: "run_vp_eintr",
        func: exits::run_vp_eintr,
        timeout: 60,
    },
    TestCase {
        name: "parallel_partitions",
        func: concurrency::parallel_partitions,
        timeout: 300,
    },
    TestCase {
        name: "close_partition_while_vp_runs",
        func: concurrency::close_partition_while_vp_runs,
        timeout: 120,
    },
    TestCase {
        name: "no_leaks",
        func: leaks::no_leaks,
        timeout: 900,
    },
    TestCase {
        name: "async_property_completion",
        func: state::async_property_completion,
        timeout: 120,
    },
    TestCase {
        name: "partition_charges_root_pool",
        func: sim::partition_charges_root_pool,
        timeout: 60,
    },
    TestCase {
        name: "synic_signal_wakes_new_vp",
        func: sim::synic_signal_wakes_new_vp,
        timeout: 120,
    },
    TestCase {
        name: "core_every_exit_is_one_opaque_intercept",
        func: sched::core_every_exit_is_one_opaque_intercept,
        timeout: 120,
    },
    TestCase {
        name: "core_kick_in_flight_survives_signal",
        func: sched::core_kick_in_flight_survives_signal,
        timeout: 60,
    },
    TestCase {
        name: "core_eintr_leaves_vp_explicitly_suspended",
        func: sched::core_eintr_leaves_vp_explicitly_suspended,
        timeout: 60,
    },
    TestCase {
        name: "teardown_with_signal_in_flight",
        func: sched::teardown_with_signal_in_flight,
        timeout: 60,
    },
    TestCase {
        name: "removal_clears_slat",
        func: sim::removal_clears_slat,
        timeout: 300,
    },
    TestCase {
        name: "deposit_contiguous_block",
        func: sim::deposit_contiguous_block,
        timeout: 60,
    },
    TestCase {
        name: "injected_partial_withdraw",
        func: sim::injected_partial_withdraw,
        timeout: 60,
    },
    TestCase {
        name: "injected_partial_deposit",
        func: sim::injected_partial_deposit,
        timeout: 60,
    },
    TestCase {
        name: "vp_state_pages_unmapped_once",
        func: sim::vp_state_pages_unmapped_once,
        timeout: 60,
    },
    TestCase {
        name: "injected_no_memory_elsewhere_is_retried",
        func: sim::injected_no_memory_elsewhere_is_retried,
        timeout: 60,
    },
    TestCase {
        name: "deposit_rounds_exhausted_is_enomem",
        func: sim::deposit_rounds_exhausted_is_enomem,
        timeout: 120,
    },
    TestCase {
        name: "repeated_intercept_goes_to_vmm",
        func: sim::repeated_intercept_goes_to_vmm,
        timeout: 60,
    },
    TestCase {
        name: "create_vp_unwinds_after_stats_map_failure",
        func: sim::create_vp_unwinds_after_stats_map_failure,
        timeout: 60,
    },
    TestCase {
        name: "injected_no_memory_is_retried",
        func: sim::injected_no_memory_is_retried,
        timeout: 300,
    },
    TestCase {
        name: "injected_map_failure_is_clean",
        func: sim::injected_map_failure_is_clean,
        timeout: 300,
    },
    TestCase {
        name: "injected_unmap_failure_is_retried",
        func: sim::injected_unmap_failure_is_retried,
        timeout: 300,
    },
    TestCase {
        name: "injected_unmap_failure_keeps_pins",
        func: sim::injected_unmap_failure_keeps_pins,
        timeout: 300,
    },
    TestCase {
        name: "kept_region_invalidation_unmaps",
        func: sim::kept_region_invalidation_unmaps,
        timeout: 300,
    },
    TestCase {
        name: "kept_region_holds_pages",
        func: sim::kept_region_holds_pages,
        timeout: 300,
    },
    TestCase {
        name: "kept_region_pins_survive_failed_delete",
        func: sim::kept_region_pins_survive_failed_delete,
        timeout: 300,
    },
    TestCase {
        name: "injected_remap_failure_refaults",
        func: sim::injected_remap_failure_refaults,
        timeout: 300,
    },
    TestCase {
        name: "mmio_pfnmap_pgoff_not_pfn",
        func: mmio::mmio_pfnmap_pgoff_not_pfn,
        timeout: 300,
    },
    TestCase {
        name: "mmio_region_larger_than_vma",
        func: mmio::mmio_region_larger_than_vma,
        timeout: 300,
    },
    TestCase {
        name: "mmio_readonly_vma_maps_readonly",
        func: mmio::mmio_readonly_vma_maps_readonly,
        timeout: 300,
    },
    TestCase {
        name: "mmio_munmap_unmaps_slat",
        func: mmio::mmio_munmap_unmaps_slat,
        timeout: 300,
    },
    TestCase {
        name: "trace_events",
        func: trace::trace_events,
        timeout: 300,
    },
    TestCase {
        name: "mirror_check_after_movable_events",
        func: sim::mirror_check_after_movable_events,
        timeout: 300,
    },
    TestCase {
        name: "mirror_checker_catches_corruption",
        func: sim::mirror_checker_catches_corruption,
        timeout: 300,
    },
    TestCase {
        name: "irqfd_assign_errors",
        func: irq::irqfd_assign_errors,
        timeout: 60,
    },
    TestCase {
        name: "ioeventfd_forms_and_errors",
        func: irq::ioeventfd_forms_and_errors,
        timeout: 60,
    },
    TestCase {
        name: "msi_routing_set_replace_oversize",
        func: irq::msi_routing_set_replace_oversize,
        timeout: 60,
    },
    TestCase {
        name: "irqfd_wakes_halted_vp",
        func: irq::irqfd_wakes_halted_vp,
        timeout: 120,
    },
    TestCase {
        name: "irqfd_before_route",
        func: irq::irqfd_before_route,
        timeout: 120,
    },
    TestCase {
        name: "root_stale_signal_keeps_vp_waiting",
        func: irq::root_stale_signal_keeps_vp_waiting,
        timeout: 60,
    },
    TestCase {
        name: "irqfd_resample_on_eoi",
        func: irq::irqfd_resample_on_eoi,
        timeout: 120,
    },
    TestCase {
        name: "assert_interrupt_errors",
        func: irq::assert_interrupt_errors,
        timeout: 60,
    },
    TestCase {
        name: "irqfd_gone_with_its_eventfd",
        func: irq::irqfd_gone_with_its_eventfd,
        timeout: 300,
    },
    TestCase {
        name: "ioeventfd_limit",
        func: irq::ioeventfd_limit,
        timeout: 300,
    },
    TestCase {
        name: "ioeventfd_fires_on_guest_write",
        func: irq::ioeventfd_fires_on_guest_write,
        timeout: 120,
    },
    TestCase {
        name: "ioeventfd_datamatch_64bit",
        func: irq::ioeventfd_datamatch_64bit,
        timeout: 120,
    },
    // state (issue 4 part 2: GPAP bitmap, VP state, register page, registers)
    TestCase {
        name: "gpap_dirty_tracking",
        func: state::gpap_dirty_tracking,
        timeout: 300,
    },
    TestCase {
        name: "vp_state_round_trips",
        func: state::vp_state_round_trips,
        timeout: 120,
    },
    TestCase {
        name: "register_page_protocol",
        func: state::register_page_protocol,
        timeout: 120,
    },
    TestCase {
        name: "registers_round_trip",
        func: state::registers_round_trip,
        timeout: 120,
    },
    TestCase {
        name: "partition_properties",
        func: state::partition_properties,
        timeout: 60,
    },
    TestCase {
        name: "cpuid_and_msr_intercepts",
        func: state::cpuid_and_msr_intercepts,
        timeout: 120,
    },
    TestCase {
        name: "cloud_hypervisor_boot_sequence",
        func: state::cloud_hypervisor_boot_sequence,
        timeout: 120,
    },
    TestCase {
        name: "translate_gva_refaults_page_tables",
        func: state::translate_gva_refaults_page_tables,
        timeout: 120,
    },
    // Issue 5: movable memory under Linux memory management.
    TestCase {
        name: "scen_mremap",
        func: scenarios::scen_mremap,
        timeout: 600,
    },
    TestCase {
        name: "scen_numa_migrate",
        func: scenarios::scen_numa_migrate,
        timeout: 600,
    },
    TestCase {
        name: "scen_thp_collapse_split",
        func: scenarios::scen_thp_collapse_split,
        timeout: 600,
    },
    TestCase {
        name: "scen_ksm_cow",
        func: scenarios::scen_ksm_cow,
        timeout: 600,
    },
    TestCase {
        name: "scen_swap_pageout",
        func: scenarios::scen_swap_pageout,
        timeout: 600,
    },
    TestCase {
        name: "scen_fork_cow",
        func: scenarios::scen_fork_cow,
        timeout: 600,
    },
    TestCase {
        name: "scen_memfd_punch_hole",
        func: scenarios::scen_memfd_punch_hole,
        timeout: 600,
    },
    TestCase {
        name: "scen_memfd_guest_write_survives_pageout",
        func: scenarios::scen_memfd_guest_write_survives_pageout,
        timeout: 600,
    },
    TestCase {
        name: "scen_hugetlb",
        func: scenarios::scen_hugetlb,
        timeout: 600,
    },
    TestCase {
        name: "scen_tmpfs_file",
        func: scenarios::scen_tmpfs_file,
        timeout: 600,
    },
    TestCase {
        name: "scen_unmap_race",
        func: scenarios::scen_unmap_race,
        timeout: 600,
    },
    TestCase {
        name: "scen_stress",
        func: scenarios::scen_stress,
        timeout: 900,
    },
    TestCase {
        name: "scen_memcg_pressure",
        func: scenarios::scen_memcg_pressure,
        timeout: 900,
    },
    // Issue 14: hardening (foreign mm, region bounds, killable waits).
    TestCase {
        name: "foreign_mm_ioctls_eio",
        func: hardening::foreign_mm_ioctls_eio,
        timeout: 180,
    },
    TestCase {
        name: "set_memory_bounds",
        func: hardening::set_memory_bounds,
        timeout: 300,
    },
    TestCase {
        name: "region_setup_killable",
        func: hardening::region_setup_killable,
        timeout: 900,
    },
    TestCase {
        name: "gpap_walk_killable",
        func: hardening::gpap_walk_killable,
        timeout: 300,
    },
    TestCase {
        name: "uffd_fault_killable",
        func: hardening::uffd_fault_killable,
        timeout: 300,
    },
    TestCase {
        name: "set_memory_allocation_failures",
        func: hardening::set_memory_allocation_failures,
        timeout: 600,
    },
    TestCase {
        name: "reaped_vmm_nonblocking_invalidation",
        func: hardening::reaped_vmm_nonblocking_invalidation,
        timeout: 600,
    },
    TestCase {
        name: "create_vp_failure_keeps_no_deposit",
        func: hardening::create_vp_failure_keeps_no_deposit,
        timeout: 60,
    },
    TestCase {
        name: "write_fault_only_written_page",
        func: hardening::write_fault_only_written_page,
        timeout: 120,
    },
    TestCase {
        name: "region_past_gpa_width_released",
        func: hardening::region_past_gpa_width_released,
        timeout: 60,
    },
    TestCase {
        name: "pinned_region_past_gpa_width_released",
        func: hardening::pinned_region_past_gpa_width_released,
        timeout: 60,
    },
    TestCase {
        name: "mmio_region_past_gpa_width_released",
        func: mmio::mmio_region_past_gpa_width_released,
        timeout: 60,
    },
    TestCase {
        name: "vp_wait_killable",
        func: hardening::vp_wait_killable,
        timeout: 180,
    },
    // The real Cloud Hypervisor (MSHV_CH_BIN, built by scripts/cloud-hypervisor).
    TestCase {
        name: "ch_hello",
        func: ch::ch_hello,
        timeout: 180,
    },
    TestCase {
        name: "ch_memory",
        func: ch::ch_memory,
        timeout: 900,
    },
    TestCase {
        name: "ch_smp",
        func: ch::ch_smp,
        timeout: 300,
    },
    TestCase {
        name: "ch_reboot",
        func: ch::ch_reboot,
        timeout: 300,
    },
    TestCase {
        name: "ch_rng",
        func: ch::ch_rng,
        timeout: 400,
    },
    TestCase {
        name: "ch_pause_resume",
        func: ch::ch_pause_resume,
        timeout: 400,
    },
    TestCase {
        name: "ch_snapshot_restore",
        func: ch::ch_snapshot_restore,
        timeout: 700,
    },
];
