using System.Collections.Concurrent;
using System.Diagnostics;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Monitoring.Stream.Hosting.DependencyInjection;
using Monitoring.Stream.Hosting.Instruments;
using Monitoring.Stream.Hosting.Queries;
using Monitoring.Stream.Hosting.Tests.Support;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using Xunit.Abstractions;

namespace Monitoring.Stream.Hosting.Tests.Probe;

/// <summary>Runs alone: one of its tests blocks every thread-pool worker of the process for seconds.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class Probe14Alone
{
    public const string Name = "Probe14 alone (stalls the thread pool)";
}

/// <summary>
/// Probe 14: an in-process host (<c>services.AddMonitoringStream</c>) whose thread pool is stalled for seconds while
/// instruments record on dedicated threads, and stops and disposals racing each other and the writers. From
/// docs/sdk.md ("A call never throws", the idle flush within ProducerFlushInterval, "Shutdown and logging", Health),
/// docs/event-time.md ("Two ticks that arrive back to back after a stall of the thread pool change nothing: nobody
/// became idle, no in-order point becomes late"; "A source with points on their way is never idle") and README.md
/// ("There is one stop"; writes after Dispose/StopAsync are WriterClosed).
/// </summary>
[Collection(Probe14Alone.Name)]
public class Probe14HostingBlackBoxTests(ITestOutputHelper output)
{
    private const string EngineCheck = MonitoringStreamServiceCollectionExtensions.EngineHealthCheckName;

    private static IHost BuildHost(params (string Key, string Value)[] more)
    {
        var settings = new Dictionary<string, string?>
        {
            ["MonitoringStream:ArrowStoreEnabled"] = "false",
            ["MonitoringStream:SystemMetricsEnabled"] = "false",
            ["MonitoringStream:Pipeline:ShardCount"] = "2",
        };
        foreach ((string key, string value) in more)
        {
            settings["MonitoringStream:" + key] = value;
        }

        HostApplicationBuilder builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Configuration.AddInMemoryCollection(settings);
        builder.Logging.ClearProviders();
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(30));
        builder.Services.AddMonitoringStream();
        return builder.Build();
    }

    private static string Describe(PipelineMetrics m) =>
        $"offered {m.Offered}, accepted {m.Accepted}, rejected {m.Rejected} [{string.Join(", ", m.RejectedByReason.Where(r => r.Value > 0).Select(r => $"{r.Key} {r.Value}"))}], " +
        $"dropped {m.Dropped} [{string.Join(", ", m.DroppedByReason.Where(r => r.Value > 0).Select(r => $"{r.Key} {r.Value}"))}], emitted {m.EmittedPoints}, late {m.Late} " +
        $"[{string.Join(", ", m.LateByMetric.Where(r => r.Value > 0).Select(r => $"{r.Key} {r.Value}"))}], open {m.OpenWindowPoints}, queued {m.Queued}, stale {m.StalePoints}, faulted {m.FaultedPoints}, state {m.State}";

    private static async Task<HealthReportEntry> EngineHealthAsync(IHost host)
    {
        HealthReport report = await host.Services.GetRequiredService<HealthCheckService>().CheckHealthAsync(r => r.Name == EngineCheck).WaitAsync(TimeSpan.FromSeconds(30));
        return report.Entries[EngineCheck];
    }

    /// <summary>A thread of its own that records about once a millisecond until stopped.</summary>
    private sealed class RecordingThread
    {
        private readonly Thread _thread;
        private volatile bool _stop;
        private long _calls;
        private long _accepted;
        private long _acceptedWhileStalled;
        private readonly ConcurrentDictionary<RejectReason, long> _refused = new();

        public RecordingThread(string name, Func<RejectReason> record, Func<bool> stalled)
        {
            _thread = new Thread(() =>
            {
                while (!_stop)
                {
                    bool during = stalled();
                    RejectReason r = record();
                    Interlocked.Increment(ref _calls);
                    if (r == RejectReason.None)
                    {
                        Interlocked.Increment(ref _accepted);
                        if (during && stalled())
                        {
                            Interlocked.Increment(ref _acceptedWhileStalled);
                        }
                    }
                    else
                    {
                        _refused.AddOrUpdate(r, 1, (_, n) => n + 1);
                    }

                    Thread.Sleep(1);
                }
            })
            { IsBackground = true, Name = name };
            _thread.Start();
        }

        public long Accepted => Interlocked.Read(ref _accepted);

        public long AcceptedWhileStalled => Interlocked.Read(ref _acceptedWhileStalled);

        public string Refused => string.Join(", ", _refused.Select(p => $"{p.Key} {p.Value}"));

        public void Stop()
        {
            _stop = true;
            Assert.True(_thread.Join(TimeSpan.FromSeconds(30)), $"{_thread.Name} did not end within 30 s (a call hung)");
        }
    }

    [Fact]
    public async Task Probe14_ThreadPoolStalledFiveSeconds_DedicatedThreadsRecord_NothingLateCountsExactIdleBufferFlushedHealthyStopEnds()
    {
        // Idle timeout 2 s under a 5 s stall: every source looks silent to the first ticks after it unless the engine
        // stamps idleness as event-time.md says. 1 s windows, 1 s lateness: windows close within seconds.
        using IHost host = BuildHost(
            ("Pipeline:WindowSize", "00:00:01"),
            ("Pipeline:AllowedLateness", "00:00:01"),
            ("Pipeline:SourceIdleTimeout", "00:00:02"),
            ("Health:LateRateDegraded", "1"),      // the self-metrics' own writers hop between pool threads: grade only ours
            ("Health:LateRateUnhealthy", "1"));
        await host.StartAsync().WaitAsync(TimeSpan.FromSeconds(30));
        MetricsCollector collector = host.Services.GetRequiredService<MetricsCollector>();
        MetricsPipeline pipeline = collector.Pipeline;
        MetricHistogram latency = collector.CreateHistogram("probe14_stall_seconds", ["thread"]);
        MetricCounter requests = collector.CreateCounter("probe14_stall_total", ["thread"]);
        MetricHistogram lonely = collector.CreateHistogram("probe14_stall_lonely", ["phase"]);
        BoundHistogram bound = latency.Bind("bound");

        long stallStartMs = 0;
        long stallEndMs = 0;
        bool Stalled() => Volatile.Read(ref stallStartMs) != 0 && Volatile.Read(ref stallEndMs) == 0;
        var threads = new[]
        {
            new RecordingThread("probe14-labelled", () => latency.Record(0.5, "labelled"), Stalled),
            new RecordingThread("probe14-bound", () => bound.Record(0.25), Stalled),
            new RecordingThread("probe14-counter", () => requests.Add(1, "counter"), Stalled),
        };

        // A thread that writes three points in the middle of the stall and then sits idle (alive, never writing again):
        // only the engine's flush can hand them over, once the pool lets it run.
        using var lonelyWrote = new ManualResetEventSlim();
        using var lonelyMayEnd = new ManualResetEventSlim();
        var lonelyResults = new RejectReason[3];
        var lonelyThread = new Thread(() =>
        {
            while (!Stalled())
            {
                Thread.Sleep(5);
            }

            Thread.Sleep(2000);
            for (int i = 0; i < 3; i++)
            {
                lonelyResults[i] = lonely.Record(i + 1, "stall");
            }

            lonelyWrote.Set();
            lonelyMayEnd.Wait(TimeSpan.FromSeconds(120));
        })
        { IsBackground = true, Name = "probe14-lonely" };
        lonelyThread.Start();

        await Task.Delay(1000);

        // The stall: far more blocking work items than the pool has threads; the pool adds threads slowly and each one
        // it adds blocks too. A marker item queued behind them shows the stall was real.
        using var release = new ManualResetEventSlim();
        const int Blockers = 256;
        int blocked = 0;
        for (int i = 0; i < Blockers; i++)
        {
            ThreadPool.UnsafeQueueUserWorkItem(_ =>
            {
                Interlocked.Increment(ref blocked);
                release.Wait();
            }, null);
        }

        long markerRanMs = 0;
        ThreadPool.UnsafeQueueUserWorkItem(_ => Volatile.Write(ref markerRanMs, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds()), null);
        Volatile.Write(ref stallStartMs, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
        Thread.Sleep(5000); // this thread is the test's own; it holds no pool thread after this point matters
        Assert.True(lonelyWrote.Wait(TimeSpan.FromSeconds(30)), "the lonely thread did not write");
        long releaseMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        Volatile.Write(ref stallEndMs, releaseMs);
        release.Set();
        Assert.True(lonelyResults.All(r => r == RejectReason.None), $"the lonely thread's points during the stall: {string.Join(", ", lonelyResults)}");

        // The lonely thread's three points: handed over by the engine within its flush interval once the pool runs again,
        // closed within a few windows (generous bound for a loaded machine), and not late.
        MetricStatisticsService queries = host.Services.GetRequiredService<MetricStatisticsService>();
        var sinceRelease = Stopwatch.StartNew();
        MetricStatistics? lonelyStats = null;
        while (sinceRelease.Elapsed < TimeSpan.FromSeconds(30))
        {
            lonelyStats = queries.GetMatching("probe14_stall_lonely", LabelSet.Empty, TimeSpan.FromMinutes(5));
            if (lonelyStats?.Count == 3)
            {
                break;
            }

            await Task.Delay(50);
        }

        TimeSpan lonelyTook = sinceRelease.Elapsed;
        long markerMs = Volatile.Read(ref markerRanMs);
        Assert.True(markerMs == 0 || markerMs >= releaseMs - 50, $"the marker queued behind the blockers ran {releaseMs - markerMs} ms before the release: the pool was not stalled ({Volatile.Read(ref blocked)} blockers started)");
        Assert.True(lonelyStats?.Count == 3, $"the idle thread's 3 points were not in a closed window 30 s after the pool recovered (count {lonelyStats?.Count}): {Describe(pipeline.GetMetrics())}");

        // Keep recording a little after the stall, then stop the threads.
        await Task.Delay(1500);
        foreach (RecordingThread t in threads)
        {
            t.Stop();
        }

        // Health comes back to Healthy once the queues have drained (thresholds: queue fill, drops, sinks).
        HealthReportEntry health = await EngineHealthAsync(host);
        var healthClock = Stopwatch.StartNew();
        while (health.Status != HealthStatus.Healthy && healthClock.Elapsed < TimeSpan.FromSeconds(30))
        {
            await Task.Delay(200);
            health = await EngineHealthAsync(host);
        }

        Assert.True(health.Status == HealthStatus.Healthy, $"the engine is {health.Status} ({health.Description}) 30 s after the stall: {Describe(pipeline.GetMetrics())}");

        var stop = Stopwatch.StartNew();
        Task stopping = host.StopAsync();
        Assert.True(await Task.WhenAny(stopping, Task.Delay(TimeSpan.FromSeconds(60))) == stopping, "the host did not stop within 60 s after the stall");
        await stopping;
        lonelyMayEnd.Set();
        Assert.True(lonelyThread.Join(TimeSpan.FromSeconds(30)));

        PipelineMetrics m = pipeline.GetMetrics();
        string d = Describe(m) + $"; lonely after {lonelyTook.TotalMilliseconds:F0} ms; threads refused: {string.Join(" | ", threads.Select(t => t.Refused))}";
        Assert.Equal(PipelineState.Stopped, m.State);
        output.WriteLine($"blockers started {Volatile.Read(ref blocked)}, marker ran {markerMs - releaseMs} ms after the release, " +
            $"bound calls during the stall {threads[1].AcceptedWhileStalled}; {d}");

        // No in-order point of ours is late, none was dropped or refused, and every accepted call is counted exactly once.
        foreach (string metric in new[] { "probe14_stall_seconds", "probe14_stall_total", "probe14_stall_lonely" })
        {
            Assert.True(m.LateByMetric.GetValueOrDefault(metric) == 0, $"{metric}: {m.LateByMetric.GetValueOrDefault(metric)} late points after a stall of the thread pool: {d}");
        }

        Assert.True(m.Dropped == 0, d);
        MetricStatistics? labelled = queries.GetStatistics("probe14_stall_seconds", LabelSet.Create(new Label("thread", "labelled")), TimeSpan.FromMinutes(10));
        MetricStatistics? boundStats = queries.GetStatistics("probe14_stall_seconds", LabelSet.Create(new Label("thread", "bound")), TimeSpan.FromMinutes(10));
        MetricStatistics? counter = queries.GetStatistics("probe14_stall_total", LabelSet.Create(new Label("thread", "counter")), TimeSpan.FromMinutes(10));
        Assert.True(labelled?.Count == threads[0].Accepted, $"labelled: counted {labelled?.Count}, accepted calls {threads[0].Accepted}: {d}");
        Assert.True(boundStats?.Count == threads[1].Accepted, $"bound: counted {boundStats?.Count}, accepted calls {threads[1].Accepted}: {d}");
        Assert.True(counter?.Count == threads[2].Accepted && counter.Sum == threads[2].Accepted, $"counter: counted {counter?.Count} sum {counter?.Sum}, accepted calls {threads[2].Accepted}: {d}");

        // Stamped when recorded, not when the pool got to them: the points recorded during the stall lie in windows of
        // the stall (a window of slack each side).
        DateTimeOffset from = DateTimeOffset.FromUnixTimeMilliseconds(stallStartMs - 1000);
        DateTimeOffset to = DateTimeOffset.FromUnixTimeMilliseconds(releaseMs + 1000);
        MetricStatistics? duringStall = queries.GetStatistics("probe14_stall_seconds", LabelSet.Create(new Label("thread", "bound")), from, to);
        Assert.True(threads[1].AcceptedWhileStalled > 1000, $"only {threads[1].AcceptedWhileStalled} bound calls during the 5 s stall");
        Assert.True(duringStall?.Count >= threads[1].AcceptedWhileStalled, $"bound: {duringStall?.Count} points in the windows of the stall, {threads[1].AcceptedWhileStalled} recorded during it: stamped late? {d}");
        MetricStatistics? lonelyStall = queries.GetMatching("probe14_stall_lonely", LabelSet.Empty, from, to);
        Assert.True(lonelyStall?.Count == 3, $"the lonely points are not in the windows of the stall ({lonelyStall?.Count}): {d}");
    }
    [Fact]
    public async Task Probe14_TwoHostStopsPipelineStopAndCollectorDisposeAtOnceWhileFourThreadsRecord_NeverThrowEveryPointOnceThenWriterClosed()
    {
        // sdk.md: "A call never throws"; README: writes after Dispose/StopAsync are WriterClosed, counted; "There is one
        // stop: a concurrent or later StopAsync ends as it ended"; a graceful stop brings every accepted point to every
        // sink. event-time.md: once a call was refused WriterClosed, every later call of that writer is too.
        using IHost host = BuildHost(("Pipeline:WindowSize", "00:00:01"), ("Pipeline:AllowedLateness", "00:00:01"));
        await host.StartAsync().WaitAsync(TimeSpan.FromSeconds(30));
        MetricsCollector collector = host.Services.GetRequiredService<MetricsCollector>();
        MetricsPipeline pipeline = collector.Pipeline;
        MetricHistogram h = collector.CreateHistogram("probe14_race_seconds", ["thread"]);
        MetricCounter c = collector.CreateCounter("probe14_race_total", ["thread"]);
        MetricGauge g = collector.CreateGauge("probe14_race_level", ["thread"]);
        BoundHistogram bound = h.Bind("bound");
        Func<RejectReason>[] calls =
        [
            () => h.Record(1, "labelled"),
            () => bound.Record(2),
            () => c.Add(1, "counter"),
            () => g.Set(3, "gauge"),
        ];
        long[] accepted = new long[calls.Length];
        long[] closed = new long[calls.Length];
        var problems = new ConcurrentQueue<string>();
        using var allStopped = new ManualResetEventSlim();
        var threads = calls.Select((call, i) => new Thread(() =>
        {
            bool refused = false;
            long afterStops = 0;
            while (afterStops < 2000)
            {
                RejectReason r;
                try
                {
                    r = call();
                }
                catch (Exception e)
                {
                    problems.Enqueue($"thread {i}: {e.GetType().Name}: {e.Message}");
                    return;
                }

                if (r == RejectReason.None)
                {
                    accepted[i]++;
                    if (refused)
                    {
                        problems.Enqueue($"thread {i}: a call accepted after an earlier call was refused WriterClosed");
                    }
                }
                else if (r == RejectReason.WriterClosed)
                {
                    closed[i]++;
                    refused = true;
                }
                else
                {
                    problems.Enqueue($"thread {i}: {r}");
                }

                if (allStopped.IsSet)
                {
                    afterStops++;
                }

                if ((accepted[i] + closed[i]) % 10 == 0)
                {
                    Thread.Sleep(1); // at most about 10,000 calls a second per thread: the shards keep up, nothing is dropped
                }
            }
        })
        { IsBackground = true, Name = $"probe14-race-{i}" }).ToArray();
        foreach (Thread t in threads)
        {
            t.Start();
        }

        await Task.Delay(700);

        // Four stoppers released at once, each on its own thread.
        using var go = new ManualResetEventSlim();
        Task<Exception?> Stopper(Func<Task> stop) => Task.Factory.StartNew(
            () =>
            {
                go.Wait();
                try
                {
                    stop().Wait(TimeSpan.FromSeconds(60));
                    return null;
                }
                catch (AggregateException e)
                {
                    return e.InnerException;
                }
            },
            CancellationToken.None,
            TaskCreationOptions.LongRunning,
            TaskScheduler.Default);
        Task<Exception?>[] stoppers =
        [
            Stopper(() => host.StopAsync()),
            Stopper(() => host.StopAsync()),
            Stopper(() => pipeline.StopAsync()),
            Stopper(() => { collector.Dispose(); collector.Dispose(); return Task.CompletedTask; }),
        ];
        go.Set();
        Task all = Task.WhenAll(stoppers);
        Assert.True(await Task.WhenAny(all, Task.Delay(TimeSpan.FromSeconds(90))) == all, $"the stops did not all end within 90 s: {Describe(pipeline.GetMetrics())}");
        Exception?[] errors = await Task.WhenAll(stoppers);
        allStopped.Set();
        foreach (Thread t in threads)
        {
            Assert.True(t.Join(TimeSpan.FromSeconds(60)), $"{t.Name} did not end within 60 s: a call hung after the stop");
        }

        // Later calls: one more stop of the pipeline ends as the stop ended, a disposal again never throws.
        Exception? later = await Record.ExceptionAsync(() => pipeline.StopAsync().WaitAsync(TimeSpan.FromSeconds(30)));
        collector.Dispose();

        PipelineMetrics m = pipeline.GetMetrics();
        string d = $"{Describe(m)}; accepted [{string.Join(", ", accepted)}], closed [{string.Join(", ", closed)}]; stop errors [{string.Join(", ", errors.Select(e => e?.GetType().Name ?? "none"))}], later {later?.GetType().Name ?? "none"}";
        Assert.True(problems.IsEmpty, string.Join(" | ", problems.Take(10)) + "; " + d);
        Assert.True(errors.All(e => e is null) && later is null, "a graceful stop with working sinks ended with an exception: " + d + " " + string.Join(" | ", errors.Where(e => e is not null).Select(e => e!.ToString()[..Math.Min(400, e.ToString().Length)])));
        Assert.Equal(PipelineState.Stopped, m.State);
        Assert.True(closed.All(n => n >= 2000), "a thread was not refused WriterClosed after every stop: " + d);
        Assert.True(m.Offered == m.Accepted + m.Rejected + m.Dropped && m.Dropped == 0, d);
        long engineClosed = m.RejectedByReason.GetValueOrDefault(RejectReason.WriterClosed) + collector.GetRejectedCount(RejectReason.WriterClosed);
        Assert.True(engineClosed >= closed.Sum(), $"{closed.Sum()} calls refused WriterClosed, {engineClosed} counted: {d}");

        // Every accepted call is in the windows the index kept ("what is held stays queryable"), exactly once.
        MetricStatisticsService queries = host.Services.GetRequiredService<MetricStatisticsService>();
        (string Metric, string Thread)[] series = [("probe14_race_seconds", "labelled"), ("probe14_race_seconds", "bound"), ("probe14_race_total", "counter"), ("probe14_race_level", "gauge")];
        for (int i = 0; i < series.Length; i++)
        {
            MetricStatistics? s = queries.GetStatistics(series[i].Metric, LabelSet.Create(new Label("thread", series[i].Thread)), TimeSpan.FromMinutes(10));
            Assert.True(s?.Count == accepted[i], $"{series[i]}: counted {s?.Count}, accepted calls {accepted[i]}: {d}");
        }
    }
    [Fact]
    public async Task Probe14_StopCalledWhileTheThreadPoolIsStalled_ReturnsItsTaskAtOnceCallsNeverBlockStopEndsAfterEveryPointCounted()
    {
        // event-time.md: "StopAsync returns its task before any of this waits (the flush runs off the caller's thread)";
        // README: the shared writer "never blocks by default"; writes after StopAsync are WriterClosed; a graceful stop
        // brings every accepted point to every sink. Here the stop is asked for while no pool thread can run.
        using IHost host = BuildHost(("Pipeline:WindowSize", "00:00:01"), ("Pipeline:AllowedLateness", "00:00:01"), ("Pipeline:SourceIdleTimeout", "00:00:02"));
        await host.StartAsync().WaitAsync(TimeSpan.FromSeconds(30));
        MetricsCollector collector = host.Services.GetRequiredService<MetricsCollector>();
        MetricsPipeline pipeline = collector.Pipeline;
        MetricHistogram h = collector.CreateHistogram("probe14_stallstop_seconds", ["thread"]);
        BoundHistogram bound = h.Bind("bound");
        long[] accepted = new long[2];
        long[] closed = new long[2];
        long[] slowestCallTicks = new long[2];
        var problems = new ConcurrentQueue<string>();
        using var done = new ManualResetEventSlim();
        Func<RejectReason>[] calls = [() => h.Record(1, "labelled"), () => bound.Record(2)];
        Thread[] threads = [.. calls.Select((call, i) => new Thread(() =>
        {
            while (!done.IsSet)
            {
                long t0 = Stopwatch.GetTimestamp();
                RejectReason r;
                try
                {
                    r = call();
                }
                catch (Exception e)
                {
                    problems.Enqueue($"thread {i}: {e.GetType().Name}: {e.Message}");
                    return;
                }

                long took = Stopwatch.GetTimestamp() - t0;
                if (took > slowestCallTicks[i])
                {
                    slowestCallTicks[i] = took;
                }

                if (r == RejectReason.None)
                {
                    accepted[i]++;
                }
                else if (r == RejectReason.WriterClosed)
                {
                    closed[i]++;
                }
                else
                {
                    problems.Enqueue($"thread {i}: {r}");
                }

                Thread.Sleep(1);
            }
        })
        { IsBackground = true, Name = $"probe14-stallstop-{i}" })];
        foreach (Thread t in threads)
        {
            t.Start();
        }

        await Task.Delay(1000);
        using var release = new ManualResetEventSlim();
        for (int i = 0; i < 256; i++)
        {
            ThreadPool.UnsafeQueueUserWorkItem(_ => release.Wait(), null);
        }

        Thread.Sleep(1000);
        Task? stop = null;
        TimeSpan stopCallTook = TimeSpan.Zero;
        var stopper = new Thread(() =>
        {
            var sw = Stopwatch.StartNew();
            stop = pipeline.StopAsync();
            stopCallTook = sw.Elapsed;
        })
        { IsBackground = true, Name = "probe14-stopper" };
        stopper.Start();
        bool stopperReturned = stopper.Join(TimeSpan.FromSeconds(4)); // the stall goes on for 4 s more
        Thread.Sleep(Math.Max(0, 4000 - (int)stopCallTook.TotalMilliseconds));
        release.Set();
        Assert.True(stopper.Join(TimeSpan.FromSeconds(60)), "StopAsync did not return its task within 60 s");
        Assert.True(await Task.WhenAny(stop!, Task.Delay(TimeSpan.FromSeconds(60))) == stop, $"the stop did not end within 60 s of the pool's recovery: {Describe(pipeline.GetMetrics())}");
        Exception? stopError = await Record.ExceptionAsync(() => stop!);
        await Task.Delay(300);
        done.Set();
        foreach (Thread t in threads)
        {
            Assert.True(t.Join(TimeSpan.FromSeconds(30)), $"{t.Name} did not end");
        }

        await host.StopAsync().WaitAsync(TimeSpan.FromSeconds(60));
        PipelineMetrics m = pipeline.GetMetrics();
        string d = $"{Describe(m)}; accepted [{string.Join(", ", accepted)}], closed [{string.Join(", ", closed)}], slowest calls [{string.Join(", ", slowestCallTicks.Select(t => $"{Stopwatch.GetElapsedTime(0, t).TotalMilliseconds:F0} ms"))}], " +
            $"StopAsync returned after {stopCallTook.TotalMilliseconds:F0} ms, stop error {stopError?.GetType().Name ?? "none"}";
        output.WriteLine(d);
        Assert.True(problems.IsEmpty, string.Join(" | ", problems.Take(10)) + "; " + d);
        Assert.True(stopperReturned, "StopAsync did not return its task while the thread pool was stalled (it waited for the pool): " + d);
        Assert.True(stopError is null, "a graceful stop ended with an exception: " + d);
        Assert.True(slowestCallTicks.All(t => Stopwatch.GetElapsedTime(0, t) < TimeSpan.FromSeconds(2.5)), "a call blocked for a large part of the stall: " + d);
        Assert.True(closed.All(n => n > 0), "no call was refused after the stop: " + d);
        Assert.True(m.Dropped == 0 && m.Offered == m.Accepted + m.Rejected, d);
        MetricStatisticsService queries = host.Services.GetRequiredService<MetricStatisticsService>();
        for (int i = 0; i < 2; i++)
        {
            string label = i == 0 ? "labelled" : "bound";
            MetricStatistics? s = queries.GetStatistics("probe14_stallstop_seconds", LabelSet.Create(new Label("thread", label)), TimeSpan.FromMinutes(10));
            Assert.True(s?.Count == accepted[i], $"{label}: counted {s?.Count}, accepted calls {accepted[i]}: {d}");
        }
    }

    [Fact]
    public async Task Probe14_ExtremeValuesAndLimitsThroughInstrumentsAndTheBridge_EdgesAcceptedOneStepPastRefusedNeverThrown()
    {
        // README: values beyond ±1e100 are ValueOutOfRange, NaN NotANumber, infinities Infinity. sdk.md: "A call never
        // throws"; a counter takes "a non-negative increment" (-0.0 is not below zero); names follow the Prometheus model,
        // an invalid one throws MetricValidationException when the instrument is created; configuration.md: names up to
        // MaxNameLength (256), label values up to MaxLabelValueLength (4,096). The bridge: "a negative increment is refused
        // and counted", nothing at the call sites throws.
        string meterName = "Probe14.Extremes." + Guid.NewGuid().ToString("N");
        using IHost host = BuildHost(("Pipeline:WindowSize", "00:00:01"), ("Bridge:Meters:0", meterName));
        await host.StartAsync().WaitAsync(TimeSpan.FromSeconds(30));
        MetricsCollector collector = host.Services.GetRequiredService<MetricsCollector>();
        MetricsPipeline pipeline = collector.Pipeline;
        double above = Math.BitIncrement(1e100);
        var results = new List<string>();
        void Expect(string what, RejectReason got, RejectReason wanted)
        {
            if (got != wanted)
            {
                results.Add($"{what}: {got}, expected {wanted}");
            }
        }

        MetricCounter counter = collector.CreateCounter("probe14_extreme_total", ["k"]);
        Expect("counter Add(-0.0)", counter.Add(-0.0, "x"), RejectReason.None);
        Expect("counter Add(double.Epsilon)", counter.Add(double.Epsilon, "x"), RejectReason.None);
        Expect("counter Add(1e100)", counter.Add(1e100, "x"), RejectReason.None);
        Expect("counter Add(0)", counter.Add(0, "x"), RejectReason.None);
        Expect("counter Add(next above 1e100)", counter.Add(above, "x"), RejectReason.ValueOutOfRange);
        Expect("counter Add(-double.Epsilon)", counter.Add(-double.Epsilon, "x"), RejectReason.NegativeCounterIncrement);
        Expect("counter Add(-1e100)", counter.Add(-1e100, "x"), RejectReason.NegativeCounterIncrement);
        Expect("counter Add(NaN)", counter.Add(double.NaN, "x"), RejectReason.NotANumber);
        Expect("counter Add(-inf)", counter.Add(double.NegativeInfinity, "x"), RejectReason.Infinity);
        BoundCounter boundCounter = counter.Bind("bound");
        Expect("bound counter Add(-0.0)", boundCounter.Add(-0.0), RejectReason.None);
        Expect("bound counter Add(-double.Epsilon)", boundCounter.Add(-double.Epsilon), RejectReason.NegativeCounterIncrement);

        MetricGauge gauge = collector.CreateGauge("probe14_extreme_level", ["k"]);
        foreach (double v in new[] { -1e100, 1e100, -0.0, double.Epsilon, -double.Epsilon, 2.2250738585072014E-308 })
        {
            Expect($"gauge Set({v:R})", gauge.Set(v, "x"), RejectReason.None);
        }

        Expect("gauge Set(next above 1e100)", gauge.Set(above, "x"), RejectReason.ValueOutOfRange);
        Expect("gauge Set(next below -1e100)", gauge.Set(-above, "x"), RejectReason.ValueOutOfRange);
        Expect("gauge Set(double.MaxValue)", gauge.Set(double.MaxValue, "x"), RejectReason.ValueOutOfRange);

        string name256 = "probe14_" + new string('n', 248);
        MetricHistogram longest = collector.CreateHistogram(name256, ["k"]);
        Expect("256-character metric, 4,096-character label value", longest.Record(1, new string('v', 4096)), RejectReason.None);
        Expect("256-character metric, 4,097-character label value", longest.Record(1, new string('v', 4097)), RejectReason.LabelValueTooLong);
        Exception? tooLong = Record.Exception(() => collector.CreateHistogram(name256 + "n", ["k"]));
        if (tooLong is not MetricValidationException)
        {
            results.Add($"a 257-character metric name at creation: {tooLong?.GetType().Name ?? "no exception"}, expected MetricValidationException");
        }

        // The bridge: a Counter<double> increment of -0.0 is not negative; -double.Epsilon is.
        using var meter = new System.Diagnostics.Metrics.Meter(meterName);
        System.Diagnostics.Metrics.Counter<double> bridged = meter.CreateCounter<double>("probe14.bridged.total");
        long negativeBefore = collector.GetRejectedCount(RejectReason.NegativeCounterIncrement);
        Exception? callSite = Record.Exception(() =>
        {
            bridged.Add(-0.0);
            bridged.Add(1e100);
            bridged.Add(-double.Epsilon);
            bridged.Add(above);
            bridged.Add(double.NaN);
        });
        if (callSite is not null)
        {
            results.Add($"the bridged counter's call site threw {callSite.GetType().Name}: {callSite.Message}");
        }

        long bridgedNegative = collector.GetRejectedCount(RejectReason.NegativeCounterIncrement) - negativeBefore;
        await host.StopAsync().WaitAsync(TimeSpan.FromSeconds(60));
        MetricStatisticsService queries = host.Services.GetRequiredService<MetricStatisticsService>();
        MetricStatistics? counted = queries.GetStatistics("probe14_extreme_total", LabelSet.Create(new Label("k", "x")), TimeSpan.FromMinutes(10));
        MetricStatistics? levels = queries.GetStatistics("probe14_extreme_level", LabelSet.Create(new Label("k", "x")), TimeSpan.FromMinutes(10));
        MetricStatistics? viaBridge = queries.GetMatching("probe14_bridged_total", LabelSet.Empty, TimeSpan.FromMinutes(10));
        string d = Describe(pipeline.GetMetrics()) + $"; counter {counted?.Count}/{counted?.Sum}/{counted?.Max}, gauge {levels?.Count} [{levels?.Min:R}, {levels?.Max:R}], bridged {viaBridge?.Count}/{viaBridge?.Sum}, bridged negative refusals {bridgedNegative}";
        if (counted?.Count != 4 || counted.Max != 1e100)
        {
            results.Add("counter statistics: " + d);
        }

        if (levels?.Count != 6 || levels.Min != -1e100 || levels.Max != 1e100)
        {
            results.Add("gauge statistics: " + d);
        }

        if (viaBridge?.Count != 2 || bridgedNegative != 1)
        {
            results.Add("bridged counter: -0.0 and 1e100 taken, -double.Epsilon refused as negative: " + d);
        }

        Assert.True(results.Count == 0, string.Join("\n", results));
    }

    [Fact]
    public async Task Probe14_AbsurdSpansOverAnEarlierRunsFiles_EverythingKeptOrNothingNeverThrows()
    {
        // sdk.md: "TimeSpan.MaxValue asks for everything kept"; an explicit [from, to) must only be non-empty; windows come
        // from memory and, for an earlier run, from the store's files (read whole); "the span is rounded out to whole
        // windows". Spans at the ends of DateTimeOffset's range, over files rather than memory.
        using var folder = new TempDirectory();
        (string Key, string Value)[] store = [("ArrowStoreEnabled", "true"), ("ArrowStore:Directory", folder.Path), ("Pipeline:WindowSize", "00:00:01")];
        long accepted = 0;
        using (IHost first = BuildHost(store))
        {
            await first.StartAsync().WaitAsync(TimeSpan.FromSeconds(30));
            MetricHistogram h = first.Services.GetRequiredService<MetricsCollector>().CreateHistogram("probe14_span", ["k"]);
            var clock = Stopwatch.StartNew();
            for (int i = 0; clock.Elapsed < TimeSpan.FromSeconds(1.5); i++)
            {
                accepted += h.Record(1, i % 2 == 0 ? "a" : "b") == RejectReason.None ? 1 : 0;
                if (i % 50 == 0)
                {
                    Thread.Sleep(1);
                }
            }

            await first.StopAsync().WaitAsync(TimeSpan.FromSeconds(60));
        }

        using IHost second = BuildHost(store);
        await second.StartAsync().WaitAsync(TimeSpan.FromSeconds(30));
        MetricStatisticsService q = second.Services.GetRequiredService<MetricStatisticsService>();
        DateTimeOffset now = DateTimeOffset.UtcNow;
        var results = new List<string>();
        void Whole(string what, Func<long?> count)
        {
            try
            {
                long? n = count();
                if (n != accepted)
                {
                    results.Add($"{what}: {n?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "null"}, expected {accepted}");
                }
            }
            catch (Exception e)
            {
                results.Add($"{what}: {e.GetType().Name}: {e.Message}");
            }
        }

        void Nothing(string what, Func<object?> answer)
        {
            try
            {
                object? a = answer();
                if (a is not null && a is not System.Collections.ICollection { Count: 0 })
                {
                    results.Add($"{what}: an answer where no window lies");
                }
            }
            catch (Exception e)
            {
                results.Add($"{what}: {e.GetType().Name}: {e.Message}");
            }
        }

        Whole("GetMatching(TimeSpan.MaxValue)", () => q.GetMatching("probe14_span", LabelSet.Empty, TimeSpan.MaxValue)?.Count);
        Whole("GetMatching(MinValue, MaxValue)", () => q.GetMatching("probe14_span", LabelSet.Empty, DateTimeOffset.MinValue, DateTimeOffset.MaxValue)?.Count);
        Whole("GetMatching(MinValue, now + 1 day)", () => q.GetMatching("probe14_span", LabelSet.Empty, DateTimeOffset.MinValue, now.AddDays(1))?.Count);
        Whole("GetMatching(now - 400 days, MaxValue)", () => q.GetMatching("probe14_span", LabelSet.Empty, now.AddDays(-400), DateTimeOffset.MaxValue)?.Count);
        Whole("GetGrouped(TimeSpan.MaxValue)", () => q.GetGrouped("probe14_span", LabelSet.Empty, ["k"], TimeSpan.MaxValue).Sum(g => g.Statistics.Count));
        Whole("GetGrouped(MinValue, MaxValue)", () => q.GetGrouped("probe14_span", LabelSet.Empty, ["k"], DateTimeOffset.MinValue, DateTimeOffset.MaxValue).Sum(g => g.Statistics.Count));
        Whole("GetStatistics a + b (MinValue, MaxValue)", () =>
            q.GetStatistics("probe14_span", LabelSet.Create(new Label("k", "a")), DateTimeOffset.MinValue, DateTimeOffset.MaxValue)?.Count +
            q.GetStatistics("probe14_span", LabelSet.Create(new Label("k", "b")), DateTimeOffset.MinValue, DateTimeOffset.MaxValue)?.Count);
        Nothing("GetMatching(MaxValue - 1 ms, MaxValue)", () => q.GetMatching("probe14_span", LabelSet.Empty, DateTimeOffset.MaxValue.AddMilliseconds(-1), DateTimeOffset.MaxValue));
        Nothing("GetMatching(MinValue, MinValue + 1 ms)", () => q.GetMatching("probe14_span", LabelSet.Empty, DateTimeOffset.MinValue, DateTimeOffset.MinValue.AddMilliseconds(1)));
        Nothing("GetGrouped(year 9999)", () => q.GetGrouped("probe14_span", LabelSet.Empty, ["k"], new DateTimeOffset(9999, 1, 1, 0, 0, 0, TimeSpan.Zero), DateTimeOffset.MaxValue));
        Nothing("GetMatching(year 1 to 2)", () => q.GetMatching("probe14_span", LabelSet.Empty, DateTimeOffset.MinValue, new DateTimeOffset(2, 1, 1, 0, 0, 0, TimeSpan.Zero)));
        await second.StopAsync().WaitAsync(TimeSpan.FromSeconds(60));
        Assert.True(accepted > 0);
        Assert.True(results.Count == 0, string.Join("\n", results));
    }

    [Fact]
    public async Task Probe14_SpanShorterThanAMillisecond_IsNotEmpty_AnsweredAsTheWholeWindowItFallsIn()
    {
        // sdk.md, Statistics queries: "A span must be positive and an explicit [from, to) not empty: otherwise the call
        // throws"; an answer merges "the windows that overlap the span (the span is rounded out to whole windows)".
        // [t, t + 0.4 ms) inside a window with points is neither empty nor negative: it is that window. TimeSpan.FromTicks(1)
        // is a positive span.
        using IHost host = BuildHost(("Pipeline:WindowSize", "00:00:01"));
        await host.StartAsync().WaitAsync(TimeSpan.FromSeconds(30));
        MetricHistogram h = host.Services.GetRequiredService<MetricsCollector>().CreateHistogram("probe14_subms", ["k"]);
        long t = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() / 1000 * 1000 - 2000; // a whole window 2 s back, open for 3 s more
        for (int i = 0; i < 10; i++)
        {
            Assert.Equal(RejectReason.None, h.RecordAt(t + 100 + i, 1, "a"));
        }

        await host.StopAsync().WaitAsync(TimeSpan.FromSeconds(60));
        MetricStatisticsService q = host.Services.GetRequiredService<MetricStatisticsService>();
        Assert.Equal(10, q.GetMatching("probe14_subms", LabelSet.Empty, DateTimeOffset.FromUnixTimeMilliseconds(t), DateTimeOffset.FromUnixTimeMilliseconds(t + 1000))?.Count);

        var results = new List<string>();
        DateTimeOffset inside = DateTimeOffset.FromUnixTimeMilliseconds(t + 500).AddTicks(3000); // 0.3 ms into a millisecond
        foreach ((string what, DateTimeOffset from, DateTimeOffset to) in new[]
        {
            ("[t + 500.3 ms, t + 500.7 ms)", inside, inside.AddTicks(4000)),
            ("[t + 500.3 ms, + 1 tick)", inside, inside.AddTicks(1)),
            ("[t + 500 ms, + 1 tick)", DateTimeOffset.FromUnixTimeMilliseconds(t + 500), DateTimeOffset.FromUnixTimeMilliseconds(t + 500).AddTicks(1)),
        })
        {
            try
            {
                MetricStatistics? s = q.GetMatching("probe14_subms", LabelSet.Empty, from, to);
                if (s?.Count != 10)
                {
                    results.Add($"{what}: count {s?.Count}, expected the window's 10");
                }
            }
            catch (Exception e)
            {
                results.Add($"{what}: {e.GetType().Name}: {e.Message}");
            }
        }

        Exception? positive = Record.Exception(() => q.GetMatching("probe14_subms", LabelSet.Empty, TimeSpan.FromTicks(1)));
        if (positive is not null)
        {
            results.Add($"GetMatching(TimeSpan.FromTicks(1)), a positive span: {positive.GetType().Name}: {positive.Message}");
        }

        Assert.True(results.Count == 0, string.Join("\n", results));
    }

    [Fact]
    public async Task Probe14_BridgedMeterInstrumentsRecordThroughHostStopAndDisposal_CallSitesNeverThrow_PointsBeforeTheStopCounted()
    {
        // sdk.md, bridge: "Nothing changes at the call sites"; "Nothing at the call sites throws". Application code keeps
        // recording on its Meters while the host stops and is disposed (it does not know the host is going away).
        string meterName = "Probe14.Stop." + Guid.NewGuid().ToString("N");
        IHost host = BuildHost(("Pipeline:WindowSize", "00:00:01"), ("Bridge:Meters:0", meterName));
        await host.StartAsync().WaitAsync(TimeSpan.FromSeconds(30));
        MetricsPipeline pipeline = host.Services.GetRequiredService<MetricsCollector>().Pipeline;
        MetricStatisticsService queries = host.Services.GetRequiredService<MetricStatisticsService>();
        using var meter = new System.Diagnostics.Metrics.Meter(meterName);
        System.Diagnostics.Metrics.Counter<long> placed = meter.CreateCounter<long>("probe14.stop.placed");
        System.Diagnostics.Metrics.Histogram<double> took = meter.CreateHistogram<double>("probe14.stop.duration");
        System.Diagnostics.Metrics.UpDownCounter<int> open = meter.CreateUpDownCounter<int>("probe14.stop.open");
        var thrown = new ConcurrentQueue<string>();
        using var done = new ManualResetEventSlim();
        long[] calls = new long[3];
        Thread[] threads = [.. Enumerable.Range(0, 3).Select(i => new Thread(() =>
        {
            var tag = new KeyValuePair<string, object?>("t", i);
            while (!done.IsSet)
            {
                try
                {
                    switch (i)
                    {
                        case 0: placed.Add(1, tag); break;
                        case 1: took.Record(0.5, tag); break;
                        default: open.Add(1, tag); open.Add(-1, tag); break;
                    }

                    calls[i]++;
                }
                catch (Exception e)
                {
                    thrown.Enqueue($"thread {i}: {e.GetType().Name}: {e.Message}");
                    return;
                }

                if (calls[i] % 20 == 0)
                {
                    Thread.Sleep(1);
                }
            }
        })
        { IsBackground = true, Name = $"probe14-bridge-{i}" })];
        foreach (Thread t in threads)
        {
            t.Start();
        }

        await Task.Delay(700);
        Task stop = host.StopAsync();
        Assert.True(await Task.WhenAny(stop, Task.Delay(TimeSpan.FromSeconds(60))) == stop, "the host did not stop within 60 s while the app recorded");
        await stop;
        await Task.Delay(200);
        host.Dispose();
        await Task.Delay(300);
        done.Set();
        foreach (Thread t in threads)
        {
            Assert.True(t.Join(TimeSpan.FromSeconds(30)), $"{t.Name} hung in a call");
        }

        // After the host is gone, one more of each.
        Exception? after = Record.Exception(() =>
        {
            placed.Add(1);
            took.Record(1);
            open.Add(1);
        });
        PipelineMetrics m = pipeline.GetMetrics();
        MetricStatistics? counted = queries.GetMatching("probe14_stop_placed", LabelSet.Empty, TimeSpan.FromMinutes(10));
        string d = $"{Describe(m)}; calls [{string.Join(", ", calls)}], counted placed {counted?.Count}";
        Assert.True(thrown.IsEmpty && after is null, $"a call site threw: {string.Join(" | ", thrown.Take(5))} {after?.GetType().Name}: {d}");
        Assert.True(m.Offered == m.Accepted + m.Rejected + m.Dropped && m.Dropped == 0, d);
        Assert.True(counted?.Count > 0 && counted.Count <= calls[0] && counted.Sum == counted.Count, $"placed: the points bridged before the stop: {d}");
        Assert.True(m.Accepted == m.EmittedPoints + m.Late + m.FaultedPoints + m.StalePoints + m.OpenWindowPoints && m.OpenWindowPoints == 0, $"a graceful stop leaves nothing open: {d}");
    }

    /// <summary>Where a published file is cut to make the partial file a crash during its publication leaves.</summary>
    public enum PublicationCut
    {
        /// <summary>The whole file: the footer appended, the rename not done.</summary>
        Whole,
        LastMagicByteMissing,
        NoMagic,
        NoFooterLength,
        HalfTheFooter,
        EndMarkerOnly,
        HalfTheEndMarker,
    }

    [Theory]
    [InlineData(PublicationCut.Whole)]
    [InlineData(PublicationCut.LastMagicByteMissing)]
    [InlineData(PublicationCut.NoMagic)]
    [InlineData(PublicationCut.NoFooterLength)]
    [InlineData(PublicationCut.HalfTheFooter)]
    [InlineData(PublicationCut.EndMarkerOnly)]
    [InlineData(PublicationCut.HalfTheEndMarker)]
    public async Task Probe14_CrashDuringPublicationOrRecovery_PartialFileWithAllOrPartOfItsFooter_RecoveredEveryWindowOnce(PublicationCut cut)
    {
        // arrow-schema.md: a file is written as .arrow.partial and renamed only after its footer is written and flushed;
        // "A partial file is recovered, not deleted" (its whole batches published); "An interrupted recovery is simply
        // done again at the next open" — and recovery finishes a partial file in place by appending its end marker and
        // footer, then renaming it. A crash anywhere in that appending (or between it and the rename) leaves the partial
        // file with every batch whole and a prefix of its end marker and footer after them. None is damaged data.
        using var folder = new TempDirectory();
        (string Key, string Value)[] store = [("ArrowStoreEnabled", "true"), ("ArrowStore:Directory", folder.Path), ("Pipeline:WindowSize", "00:00:01")];
        long accepted = 0;
        double sum = 0;
        using (IHost first = BuildHost(store))
        {
            await first.StartAsync().WaitAsync(TimeSpan.FromSeconds(30));
            MetricsCollector collector = first.Services.GetRequiredService<MetricsCollector>();
            MetricHistogram h = collector.CreateHistogram("probe14_publication", ["k"]);
            var clock = Stopwatch.StartNew();
            for (int i = 0; clock.Elapsed < TimeSpan.FromSeconds(1.5); i++)
            {
                if (h.Record(i % 100, (i % 3).ToString(System.Globalization.CultureInfo.InvariantCulture)) == RejectReason.None)
                {
                    accepted++;
                    sum += i % 100;
                }

                if (i % 50 == 0)
                {
                    Thread.Sleep(1);
                }
            }

            await first.StopAsync().WaitAsync(TimeSpan.FromSeconds(60));
        }

        string[] published = Directory.GetFiles(folder.Path, "*.arrow");
        Assert.NotEmpty(published);
        Assert.Empty(Directory.GetFiles(folder.Path, "*.partial"));
        foreach (string file in published)
        {
            byte[] bytes = await File.ReadAllBytesAsync(file);
            int footerLength = BitConverter.ToInt32(bytes, bytes.Length - 10);
            int endMarker = bytes.Length - 10 - footerLength - 8; // 0xFFFFFFFF then a zero length, right after the last batch
            Assert.True(BitConverter.ToUInt32(bytes, endMarker) == uint.MaxValue && BitConverter.ToInt32(bytes, endMarker + 4) == 0, $"{file}: no end marker where the footer length says");
            int keep = cut switch
            {
                PublicationCut.Whole => bytes.Length,
                PublicationCut.LastMagicByteMissing => bytes.Length - 1,
                PublicationCut.NoMagic => bytes.Length - 6,
                PublicationCut.NoFooterLength => bytes.Length - 10,
                PublicationCut.HalfTheFooter => endMarker + 8 + (footerLength / 2),
                PublicationCut.EndMarkerOnly => endMarker + 8,
                PublicationCut.HalfTheEndMarker => endMarker + 4,
                _ => throw new ArgumentOutOfRangeException(nameof(cut)),
            };
            File.Delete(file);
            await File.WriteAllBytesAsync(file + ".partial", bytes[..keep]);
        }

        using (IHost second = BuildHost(store))
        {
            await second.StartAsync().WaitAsync(TimeSpan.FromSeconds(30));
            ArrowFileStoreView view = new(second.Services.GetRequiredService<Monitoring.Stream.Store.ArrowFileStore>());
            MetricStatistics? all = second.Services.GetRequiredService<MetricStatisticsService>().GetMatching("probe14_publication", LabelSet.Empty, TimeSpan.FromHours(1));
            string d = $"{cut}: {published.Length} file(s); {view}; statistics count {all?.Count} sum {all?.Sum}, accepted {accepted} sum {sum}";
            Assert.True(view.Store.FilesSetAside == 0, "a partial file with whole batches was set aside as damaged: " + d);
            Assert.True(view.Store.PendingRecoveries == 0 && view.Store.PartialFilesRecovered == published.Length, "not recovered: " + d);
            Assert.True(all?.Count == accepted && all.Sum == sum, "every window once: " + d);
            await second.StopAsync().WaitAsync(TimeSpan.FromSeconds(60));
        }

        Assert.Empty(Directory.GetFiles(folder.Path, "*.partial"));
        Assert.False(Directory.Exists(Path.Combine(folder.Path, "damaged")) && Directory.GetFiles(Path.Combine(folder.Path, "damaged")).Length > 0, "something was set aside");
    }

    private sealed record ArrowFileStoreView(Monitoring.Stream.Store.ArrowFileStore Store)
    {
        public override string ToString() =>
            $"set aside {Store.FilesSetAside} [{string.Join("; ", Store.SetAsideFiles.Select(f => f.ToString()))}], pending {Store.PendingRecoveries}, partial removed {Store.PartialFilesRemoved}, " +
            $"recovered {Store.PartialFilesRecovered} ({Store.BatchesRecovered} batches), write errors {Store.WriteErrors}, last error {Store.LastError}";
    }
}
