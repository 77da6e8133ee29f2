//! Store data: the WASI context, the resource table and one context per capability.

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::capability::{config::ConfigCtx, database::DatabaseCtx, log::LogCtx, mail::MailCtx, publish::PublishCtx};
use crate::runtime::limits::MemoryLimiter;

pub struct StageState {
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub limiter: MemoryLimiter,
    pub log: LogCtx,
    pub config: ConfigCtx,
    pub publish: PublishCtx,
    /// Present only when the stage is granted `database`; the interface is not linked otherwise.
    pub database: Option<DatabaseCtx>,
    /// Present only when the stage is granted `mail`.
    pub mail: Option<MailCtx>,
}

impl WasiView for StageState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}
