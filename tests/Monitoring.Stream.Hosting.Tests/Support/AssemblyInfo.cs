// The hosting tests run one class at a time. Their engines run on fake clocks but their shards, sink runners and
// timers on the real thread pool, and several assert on what a background loop did by a point of fake time; with
// classes in parallel on 2 cores, one class's engines starved another's (about one run in five failed, a different
// test each time, before this was set).
[assembly: Xunit.CollectionBehavior(DisableTestParallelization = true)]
