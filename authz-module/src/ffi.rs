//! The C ABI of Envoy's dynamic modules (Envoy 1.40, ABI `v0.2.0`;
//! `source/extensions/dynamic_modules/abi/abi.h`, see
//! docs/design/envoy-dynamic-module.md): the hooks Envoy calls, the
//! callbacks we call, and safe wrappers. This file is the crate's only
//! `unsafe`; everything above it is safe Rust.
//!
//! The rules it relies on, from the ABI's comments:
//! - Envoy's buffers (`EnvoyBuffer`, `EnvoyHttpHeader`) are borrowed for
//!   the current call only: copied before returning or calling a setter.
//! - Our buffers (`ModuleBuffer`, `ModuleHttpHeader`) are read or copied by
//!   Envoy during the call; it keeps no pointer to them.
//! - A `FilterEnvoyPtr` is used only on its stream's worker thread, inside
//!   a hook, and never after `on_http_filter_destroy`. A scheduler may be
//!   committed from any thread.
//! - No panic may unwind into Envoy: every hook catches it and fails closed.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::{Config, Filter};

#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvoyBuffer {
    ptr: *const c_char,
    length: usize,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct ModuleBuffer {
    ptr: *const c_char,
    length: usize,
}

#[repr(C)]
struct ModuleHttpHeader {
    key_ptr: *const c_char,
    key_length: usize,
    value_ptr: *const c_char,
    value_length: usize,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct EnvoyHttpHeader {
    key_ptr: *const c_char,
    key_length: usize,
    value_ptr: *const c_char,
    value_length: usize,
}

type ConfigEnvoyPtr = *mut c_void;
type ConfigModulePtr = *const c_void;
type FilterEnvoyPtr = *mut c_void;
type FilterModulePtr = *const c_void;
type SchedulerPtr = *mut c_void;

// C enums travel as 32-bit ints (x86-64 SysV); values from abi.h.
const REQUEST_HEADER: u32 = 0;
pub const HEADERS_CONTINUE: u32 = 0;
pub const HEADERS_STOP_ITERATION: u32 = 1;
pub const HEADERS_STOP_ALL_WATERMARK: u32 = 4;
const BODY_CONTINUE: u32 = 0;
const BODY_STOP_AND_BUFFER: u32 = 1;
const TRAILERS_CONTINUE: u32 = 0;
const TRAILERS_STOP: u32 = 1;

#[derive(Clone, Copy)]
pub enum Level {
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
}

extern "C" {
    fn envoy_dynamic_module_callback_http_get_headers_size(
        filter: FilterEnvoyPtr,
        header_type: u32,
    ) -> usize;
    fn envoy_dynamic_module_callback_http_get_headers(
        filter: FilterEnvoyPtr,
        header_type: u32,
        result_headers: *mut EnvoyHttpHeader,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_set_header(
        filter: FilterEnvoyPtr,
        header_type: u32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_send_response(
        filter: FilterEnvoyPtr,
        status_code: u32,
        headers: *mut ModuleHttpHeader,
        headers_size: usize,
        body: ModuleBuffer,
        details: ModuleBuffer,
    );
    fn envoy_dynamic_module_callback_http_set_dynamic_metadata_string(
        filter: FilterEnvoyPtr,
        namespace: ModuleBuffer,
        key: ModuleBuffer,
        value: ModuleBuffer,
    );
    fn envoy_dynamic_module_callback_http_filter_scheduler_new(
        filter: FilterEnvoyPtr,
    ) -> SchedulerPtr;
    fn envoy_dynamic_module_callback_http_filter_scheduler_commit(
        scheduler: SchedulerPtr,
        event_id: u64,
    );
    fn envoy_dynamic_module_callback_http_filter_scheduler_delete(scheduler: SchedulerPtr);
    fn envoy_dynamic_module_callback_http_filter_continue_decoding(filter: FilterEnvoyPtr);
    fn envoy_dynamic_module_callback_log(level: u32, message: ModuleBuffer);
    fn envoy_dynamic_module_callback_log_enabled(level: u32) -> bool;
}

fn module_buffer(s: &[u8]) -> ModuleBuffer {
    ModuleBuffer {
        ptr: s.as_ptr().cast(),
        length: s.len(),
    }
}

/// Copies `length` bytes Envoy lent us (none for a null pointer).
fn copy(ptr: *const c_char, length: usize) -> Vec<u8> {
    if ptr.is_null() || length == 0 {
        return Vec::new();
    }
    // SAFETY: Envoy guarantees `ptr` points to `length` readable bytes for
    // the duration of the call we are in; we copy them before returning.
    unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), length) }.to_vec()
}

/// Envoy's log, under its `dynamic_modules` logger (any thread).
pub fn log(level: Level, message: &str) {
    // SAFETY: plain values; the message buffer lives for the call.
    unsafe {
        if envoy_dynamic_module_callback_log_enabled(level as u32) {
            envoy_dynamic_module_callback_log(level as u32, module_buffer(message.as_bytes()));
        }
    }
}

/// One stream's request, inside a hook on its worker thread. Not `Send`
/// (it holds a raw pointer), so it cannot leave that thread.
pub struct Stream {
    ptr: FilterEnvoyPtr,
}

impl Stream {
    /// The request headers named in `wanted` (lower-case; pseudo-headers
    /// too), every value, copied; the others are not copied at all.
    pub fn request_headers(&self, wanted: &[&str]) -> Vec<(String, String)> {
        // SAFETY: `ptr` is the live stream of the hook we are in; the array
        // has exactly the size Envoy reported, and is filled by Envoy.
        unsafe {
            let n = envoy_dynamic_module_callback_http_get_headers_size(self.ptr, REQUEST_HEADER);
            let empty = EnvoyHttpHeader {
                key_ptr: std::ptr::null(),
                key_length: 0,
                value_ptr: std::ptr::null(),
                value_length: 0,
            };
            let mut raw = vec![empty; n];
            if n == 0
                || !envoy_dynamic_module_callback_http_get_headers(
                    self.ptr,
                    REQUEST_HEADER,
                    raw.as_mut_ptr(),
                )
            {
                return Vec::new();
            }
            raw.iter()
                .filter_map(|h| {
                    let key = copy(h.key_ptr, h.key_length);
                    let name = wanted.iter().find(|w| w.as_bytes() == key.as_slice())?;
                    Some((
                        (*name).to_string(),
                        String::from_utf8_lossy(&copy(h.value_ptr, h.value_length)).into_owned(),
                    ))
                })
                .collect()
        }
    }

    /// Replaces every value of `key` with `value`; false if Envoy could not.
    pub fn set_request_header(&self, key: &str, value: &str) -> bool {
        // SAFETY: live stream, our buffers live for the call.
        unsafe {
            envoy_dynamic_module_callback_http_set_header(
                self.ptr,
                REQUEST_HEADER,
                module_buffer(key.as_bytes()),
                module_buffer(value.as_bytes()),
            )
        }
    }

    /// Removes every value of `key` (a null value is the ABI's remove);
    /// false if Envoy could not.
    pub fn remove_request_header(&self, key: &str) -> bool {
        let none = ModuleBuffer {
            ptr: std::ptr::null(),
            length: 0,
        };
        // SAFETY: live stream, our buffer lives for the call.
        unsafe {
            envoy_dynamic_module_callback_http_set_header(
                self.ptr,
                REQUEST_HEADER,
                module_buffer(key.as_bytes()),
                none,
            )
        }
    }

    /// A local reply; the request goes no further.
    pub fn send_response(&self, status: u16, headers: &[(String, String)], body: &str) {
        let mut raw: Vec<ModuleHttpHeader> = headers
            .iter()
            .map(|(k, v)| ModuleHttpHeader {
                key_ptr: k.as_ptr().cast(),
                key_length: k.len(),
                value_ptr: v.as_ptr().cast(),
                value_length: v.len(),
            })
            .collect();
        // SAFETY: live stream; `raw` and the strings it points into outlive
        // the call, and Envoy copies them.
        unsafe {
            envoy_dynamic_module_callback_http_send_response(
                self.ptr,
                u32::from(status),
                raw.as_mut_ptr(),
                raw.len(),
                module_buffer(body.as_bytes()),
                module_buffer(b"devmentor_authz_denied"),
            );
        }
    }

    /// Dynamic metadata for the access log.
    pub fn set_metadata(&self, namespace: &str, key: &str, value: &str) {
        // SAFETY: live stream, our buffers live for the call.
        unsafe {
            envoy_dynamic_module_callback_http_set_dynamic_metadata_string(
                self.ptr,
                module_buffer(namespace.as_bytes()),
                module_buffer(key.as_bytes()),
                module_buffer(value.as_bytes()),
            );
        }
    }

    /// A way back to this stream's worker from another thread.
    pub fn scheduler(&self) -> Scheduler {
        // SAFETY: live stream, on its worker (we are in a hook).
        Scheduler {
            ptr: unsafe { envoy_dynamic_module_callback_http_filter_scheduler_new(self.ptr) },
        }
    }

    /// Resumes a request a hook stopped.
    pub fn continue_decoding(&self) {
        // SAFETY: live stream, on its worker (`on_http_filter_scheduled`).
        unsafe { envoy_dynamic_module_callback_http_filter_continue_decoding(self.ptr) }
    }
}

/// Envoy's scheduler for one stream: commit from any thread, and Envoy
/// calls `on_http_filter_scheduled` on the stream's worker (not at all if
/// the stream is gone by then).
pub struct Scheduler {
    ptr: SchedulerPtr,
}

// SAFETY: the ABI allows commit and delete from any thread.
unsafe impl Send for Scheduler {}

impl Scheduler {
    pub fn commit(self, event_id: u64) {
        // SAFETY: a scheduler from `scheduler_new`, not yet deleted (Drop
        // deletes it after this, once).
        unsafe { envoy_dynamic_module_callback_http_filter_scheduler_commit(self.ptr, event_id) }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        if !self.ptr.is_null() {
            // SAFETY: deleted exactly once, here.
            unsafe { envoy_dynamic_module_callback_http_filter_scheduler_delete(self.ptr) }
        }
    }
}

// ---- the hooks Envoy calls ----

/// ABI version string; a mismatch only makes Envoy warn.
static ABI_VERSION: &[u8] = b"v0.2.0\0";

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    match catch_unwind(crate::init_logging) {
        Ok(()) => ABI_VERSION.as_ptr().cast(),
        Err(_) => std::ptr::null(),
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    _envoy: ConfigEnvoyPtr,
    name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> ConfigModulePtr {
    let name = copy(name.ptr, name.length);
    let config = copy(config.ptr, config.length);
    match catch_unwind(|| Config::new(&name, &config)) {
        Ok(Ok(config)) => Box::into_raw(Box::new(config)) as ConfigModulePtr,
        Ok(Err(e)) => {
            log(Level::Error, &format!("devmentor_authz: {e}"));
            std::ptr::null()
        }
        Err(_) => {
            log(Level::Error, "devmentor_authz: configuration panicked");
            std::ptr::null()
        }
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(config: ConfigModulePtr) {
    if !config.is_null() {
        // SAFETY: made by Box::into_raw in config_new; Envoy destroys it once,
        // after the last stream using it.
        let config = unsafe { Box::from_raw(config as *mut Config) };
        let _ = catch_unwind(AssertUnwindSafe(move || drop(config)));
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config: ConfigModulePtr,
    _envoy: FilterEnvoyPtr,
) -> FilterModulePtr {
    // SAFETY: a live config from config_new (Envoy keeps it alive while
    // streams use it); shared, read-only here.
    let config = unsafe { &*(config as *const Config) };
    match catch_unwind(AssertUnwindSafe(|| config.new_filter())) {
        Ok(filter) => Box::into_raw(Box::new(filter)) as FilterModulePtr,
        // Envoy 1.40 answers a null filter with a 500: closed.
        Err(_) => std::ptr::null(),
    }
}

/// The filter of a hook: ours, made in `http_filter_new`, used only on its
/// worker thread. Shared, never `&mut`: Envoy re-enters the filter (the
/// body hook from inside `continue_decoding`), so two borrows can be live
/// at once; its mutable state is in `Cell`s and a `Mutex`.
///
/// # Safety
/// `module` must come from `envoy_dynamic_module_on_http_filter_new` and not
/// be destroyed yet.
unsafe fn filter<'a>(module: FilterModulePtr) -> &'a Filter {
    &*(module as *const Filter)
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    envoy: FilterEnvoyPtr,
    module: FilterModulePtr,
    _end_of_stream: bool,
) -> u32 {
    let stream = Stream { ptr: envoy };
    // SAFETY: Envoy passes the filter it got from http_filter_new.
    let f = unsafe { filter(module) };
    match catch_unwind(AssertUnwindSafe(|| f.on_request_headers(&stream))) {
        Ok(status) => status,
        Err(_) => {
            // Fail closed, and say so.
            log(Level::Error, "devmentor_authz: the decision panicked");
            stream.send_response(503, &[], "");
            HEADERS_STOP_ITERATION
        }
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    envoy: FilterEnvoyPtr,
    module: FilterModulePtr,
    event_id: u64,
) {
    let stream = Stream { ptr: envoy };
    // SAFETY: as above.
    let f = unsafe { filter(module) };
    match catch_unwind(AssertUnwindSafe(|| f.on_scheduled(&stream, event_id))) {
        // Resumed after the decision is applied and its borrow has ended.
        Ok(true) => stream.continue_decoding(),
        Ok(false) => {}
        Err(_) => {
            log(Level::Error, "devmentor_authz: the decision panicked");
            stream.send_response(503, &[], "");
        }
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    _envoy: FilterEnvoyPtr,
    module: FilterModulePtr,
    _end_of_stream: bool,
) -> u32 {
    // SAFETY: as above.
    if unsafe { filter(module) }.waiting() {
        BODY_STOP_AND_BUFFER
    } else {
        BODY_CONTINUE
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    _envoy: FilterEnvoyPtr,
    module: FilterModulePtr,
) -> u32 {
    // SAFETY: as above.
    if unsafe { filter(module) }.waiting() {
        TRAILERS_STOP
    } else {
        TRAILERS_CONTINUE
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    _envoy: FilterEnvoyPtr,
    _module: FilterModulePtr,
    _end_of_stream: bool,
) -> u32 {
    HEADERS_CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    _envoy: FilterEnvoyPtr,
    _module: FilterModulePtr,
    _end_of_stream: bool,
) -> u32 {
    BODY_CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    _envoy: FilterEnvoyPtr,
    _module: FilterModulePtr,
) -> u32 {
    TRAILERS_CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    _envoy: FilterEnvoyPtr,
    _module: FilterModulePtr,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_destroy(module: FilterModulePtr) {
    if !module.is_null() {
        // SAFETY: made by Box::into_raw in http_filter_new; destroyed once.
        let f = unsafe { Box::from_raw(module as *mut Filter) };
        let _ = catch_unwind(AssertUnwindSafe(move || drop(f)));
    }
}

// Hooks Envoy requires but this filter has no use for (callouts, streams,
// watermarks).

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    _envoy: FilterEnvoyPtr,
    _module: FilterModulePtr,
    _callout_id: u64,
    _result: u32,
    _headers: *const c_void,
    _headers_size: usize,
    _body_chunks: *const c_void,
    _body_chunks_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _envoy: FilterEnvoyPtr,
    _module: FilterModulePtr,
    _stream_id: u64,
    _headers: *const c_void,
    _headers_size: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _envoy: FilterEnvoyPtr,
    _module: FilterModulePtr,
    _stream_id: u64,
    _data: *const c_void,
    _data_count: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _envoy: FilterEnvoyPtr,
    _module: FilterModulePtr,
    _stream_id: u64,
    _trailers: *const c_void,
    _trailers_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _envoy: FilterEnvoyPtr,
    _module: FilterModulePtr,
    _stream_id: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _envoy: FilterEnvoyPtr,
    _module: FilterModulePtr,
    _stream_id: u64,
    _reason: u32,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _envoy: FilterEnvoyPtr,
    _module: FilterModulePtr,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _envoy: FilterEnvoyPtr,
    _module: FilterModulePtr,
) {
}
