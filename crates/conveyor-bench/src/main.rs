//! conveyor's benchmarks: every subject runs side by side with its baselines in
//! one run; a table and one JSON object per line are printed.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod noop;
mod report;

use report::Report;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let which = args.first().map(String::as_str).unwrap_or("inproc");
    let quick = args.iter().any(|a| a == "--quick");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            std::process::exit(2);
        }
    };
    let mut report = Report::default();
    match which {
        "inproc" | "noop" => {
            runtime.block_on(noop::run(&mut report, quick));
        }
        other => {
            eprintln!("unknown benchmark {other:?}; try: inproc");
            std::process::exit(2);
        }
    }
    report.print();
}
