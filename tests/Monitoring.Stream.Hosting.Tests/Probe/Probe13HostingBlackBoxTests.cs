using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Monitoring.Stream.Hosting.Dashboard;
using Monitoring.Stream.Hosting.DependencyInjection;
using Monitoring.Stream.Hosting.Health;
using Monitoring.Stream.Hosting.Instruments;
using Monitoring.Stream.Hosting.Monitors;
using Monitoring.Stream.Hosting.Queries;
using Monitoring.Stream.Hosting.Tests.Support;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Sinks;
using Monitoring.Stream.Store;

namespace Monitoring.Stream.Hosting.Tests.Probe;

/// <summary>
/// Probe 13: the hosted engine of docs/sdk.md ("Shutdown and logging", "Health", "Self-metrics through a Meter") and
/// README.md ("Stopping", sinks) under hostile sinks — ones that hang for ever ignoring their token, throw on every call,
/// or throw and then recover —, its health going degraded and unhealthy by the documented thresholds and back, every
/// documented option of docs/configuration.md refused at start-up with its name, and statistics that span a restart on
/// the same Arrow store folder with damaged files in it. From the docs and the public API only.
/// </summary>
public class Probe13HostingBlackBoxTests
{
    private const string EngineCheck = MonitoringStreamServiceCollectionExtensions.EngineHealthCheckName;

    // ---------------------------------------------------------------- hostile sinks

    /// <summary>A sink whose writes (and optionally its completion) never end and ignore their cancellation token.</summary>
    private sealed class HangingSink(bool hangOnComplete = false) : IWindowSink
    {
        private readonly TaskCompletionSource _never = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly TaskCompletionSource _firstCall = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private int _calls;

        public string Name => "hanging";

        public int Calls => Volatile.Read(ref _calls);

        public Task FirstCall => _firstCall.Task;

        public async ValueTask WriteAsync(WindowBatch batch, CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref _calls);
            _firstCall.TrySetResult();
            await _never.Task;
        }

        public async ValueTask CompleteAsync(CancellationToken cancellationToken)
        {
            if (hangOnComplete)
            {
                await _never.Task;
            }
        }

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }

    /// <summary>A sink that throws on every call while <see cref="Failing"/> is set and counts what it really took.</summary>
    private sealed class FlakySink(bool failing) : IWindowSink
    {
        private volatile bool _failing = failing;
        private long _attempts;
        private long _taken;
        private long _takenPoints;
        private readonly ConcurrentDictionary<string, int> _batchIds = new();

        public string Name => "flaky";

        public bool Failing
        {
            get => _failing;
            set => _failing = value;
        }

        public long Attempts => Interlocked.Read(ref _attempts);

        public long Taken => Interlocked.Read(ref _taken);

        public long TakenPoints => Interlocked.Read(ref _takenPoints);

        /// <summary>Batch ids taken more than once.</summary>
        public IEnumerable<string> Duplicates => _batchIds.Where(p => p.Value > 1).Select(p => p.Key);

        public ValueTask WriteAsync(WindowBatch batch, CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref _attempts);
            if (_failing)
            {
                throw new IOException("probe13: downstream refused the batch");
            }

            _batchIds.AddOrUpdate(batch.BatchId, 1, (_, n) => n + 1);
            Interlocked.Increment(ref _taken);
            Interlocked.Add(ref _takenPoints, batch.Points);
            return ValueTask.CompletedTask;
        }

        public ValueTask CompleteAsync(CancellationToken cancellationToken) => ValueTask.CompletedTask;

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }

    /// <summary>Keeps every log entry, to see what the hosted service logged.</summary>
    private sealed class ListLoggerProvider : ILoggerProvider
    {
        public ConcurrentQueue<(string Category, LogLevel Level, string Message)> Entries { get; } = new();

        public ILogger CreateLogger(string categoryName) => new ListLogger(this, categoryName);

        public void Dispose()
        {
        }

        private sealed class ListLogger(ListLoggerProvider owner, string category) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state)
                where TState : notnull => null;

            public bool IsEnabled(LogLevel logLevel) => true;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
                owner.Entries.Enqueue((category, logLevel, formatter(state, exception)));
        }
    }

    /// <summary>A sink that writes, then throws from CompleteAsync and DisposeAsync.</summary>
    private sealed class ThrowOnCloseSink : IWindowSink
    {
        private long _points;

        public string Name => "throws-on-close";

        public long Points => Interlocked.Read(ref _points);

        public ValueTask WriteAsync(WindowBatch batch, CancellationToken cancellationToken)
        {
            Interlocked.Add(ref _points, batch.Points);
            return ValueTask.CompletedTask;
        }

        public ValueTask CompleteAsync(CancellationToken cancellationToken) => throw new InvalidOperationException("probe13: complete failed");

        public ValueTask DisposeAsync() => throw new InvalidOperationException("probe13: dispose failed");
    }

    /// <summary>A sink whose every call throws an OperationCanceledException of its own (an HTTP client's timeout), never its token's.</summary>
    private sealed class OwnTimeoutSink : IWindowSink
    {
        private long _attempts;

        public string Name => "own-timeout";

        public long Attempts => Interlocked.Read(ref _attempts);

        public async ValueTask WriteAsync(WindowBatch batch, CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref _attempts);
            await Task.Yield();
            throw new TaskCanceledException("probe13: The request was canceled due to the configured HttpClient.Timeout of 100 seconds elapsing.");
        }

        public ValueTask CompleteAsync(CancellationToken cancellationToken) => ValueTask.CompletedTask;

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }

    /// <summary>A sink that blocks its calling thread inside WriteAsync (sync-over-async I/O) until released.</summary>
    private sealed class ThreadBlockingSink : IWindowSink, IDisposable
    {
        private readonly ManualResetEventSlim _release = new();
        private readonly TaskCompletionSource _firstCall = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private int _calls;

        public string Name => "thread-blocking";

        public int Calls => Volatile.Read(ref _calls);

        public Task FirstCall => _firstCall.Task;

        public void Release() => _release.Set();

        public ValueTask WriteAsync(WindowBatch batch, CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref _calls);
            _firstCall.TrySetResult();
            _release.Wait(TimeSpan.FromMinutes(2), CancellationToken.None);
            return ValueTask.CompletedTask;
        }

        public ValueTask CompleteAsync(CancellationToken cancellationToken) => ValueTask.CompletedTask;

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;

        public void Dispose() => _release.Dispose();
    }

    /// <summary>A sink that writes while its gate is open and holds every write (honouring its token) while it is shut.</summary>
    private sealed class GateSink : IWindowSink
    {
        private volatile TaskCompletionSource? _gate;
        private volatile TaskCompletionSource _blocked = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private long _written;

        public string Name => "gate";

        public long Written => Interlocked.Read(ref _written);

        /// <summary>Completes when a write is held by the shut gate.</summary>
        public Task Blocked => _blocked.Task;

        public void Shut()
        {
            _blocked = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }

        public void Open() => _gate?.TrySetResult();

        public async ValueTask WriteAsync(WindowBatch batch, CancellationToken cancellationToken)
        {
            if (_gate is TaskCompletionSource gate)
            {
                _blocked.TrySetResult();
                await gate.Task.WaitAsync(cancellationToken);
            }

            Interlocked.Increment(ref _written);
        }

        public ValueTask CompleteAsync(CancellationToken cancellationToken) => ValueTask.CompletedTask;

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }

    /// <summary>An application service whose start fails after the engine's has started.</summary>
    private sealed class FailingStartService : IHostedService
    {
        public Task StartAsync(CancellationToken cancellationToken) => throw new InvalidOperationException("probe13: the application failed to start");

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }

    // ---------------------------------------------------------------- helpers

    /// <summary>One shard, one-second windows closing at once, no store, no performance monitor, unless overridden.</summary>
    private static Dictionary<string, string?> Settings(params (string Key, string? Value)[] more)
    {
        Dictionary<string, string?> settings = new()
        {
            ["MonitoringStream:ArrowStoreEnabled"] = "false",
            ["MonitoringStream:SystemMetricsEnabled"] = "false",
            ["MonitoringStream:Pipeline:ShardCount"] = "1",
            ["MonitoringStream:Pipeline:WindowSize"] = "00:00:01",
            ["MonitoringStream:Pipeline:AllowedLateness"] = "00:00:00",

            // Late points graded only at 100 % unless a case sets the rates: with 1 s windows, no lateness and writers
            // that await (each pool thread a source of its own), a few points arrive late, and since session 13 the
            // late rate covers the last one to two minutes rather than the time since the previous check.
            ["MonitoringStream:Health:LateRateDegraded"] = "1",
            ["MonitoringStream:Health:LateRateUnhealthy"] = "1",
        };
        foreach ((string key, string? value) in more)
        {
            settings["MonitoringStream:" + key] = value;
        }

        return settings;
    }

    private static IHost BuildHost(Dictionary<string, string?> settings, TimeSpan shutdownTimeout, Action<IServiceCollection>? more = null, ILoggerProvider? logs = null)
    {
        HostApplicationBuilder builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Configuration.AddInMemoryCollection(settings);
        builder.Logging.ClearProviders();
        if (logs is not null)
        {
            builder.Logging.AddProvider(logs);
            builder.Logging.SetMinimumLevel(LogLevel.Trace);
        }

        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = shutdownTimeout);
        builder.Services.AddMonitoringStream();
        more?.Invoke(builder.Services);
        return builder.Build();
    }

    private static string Describe(PipelineMetrics m) =>
        $"offered {m.Offered}, accepted {m.Accepted}, rejected {m.Rejected} [{string.Join(", ", m.RejectedByReason.Where(r => r.Value > 0).Select(r => $"{r.Key} {r.Value}"))}] " +
        $"by source [{string.Join(", ", m.Sources.Where(x => x.Rejected > 0).Select(x => $"{x.Source} {x.Rejected}"))}], dropped {m.Dropped}, emitted {m.EmittedPoints}, late {m.Late}, " +
        $"stale {m.StalePoints}, faulted {m.FaultedPoints}, open {m.OpenWindowPoints}; sinks: " +
        string.Join("; ", m.Sinks.Select(s => $"{s.Name} written {s.BatchesWritten}/{s.PointsWritten} failed {s.BatchesFailed}/{s.PointsFailed} " +
            $"dropped {s.BatchesDropped}/{s.PointsDropped} abandoned {s.BatchesAbandoned}/{s.PointsAbandoned} queue {s.QueueDepth} errors {s.Errors} state {s.State}"));

    /// <summary>
    /// README: "offered = accepted + rejected + dropped"; "Every window ends in exactly one of written, failed, dropped or
    /// abandoned for each sink", so every point the engine put into a window is, for each sink, in exactly one of those.
    /// </summary>
    private static void AssertEveryPointAccountedForEverySink(PipelineMetrics m)
    {
        Assert.True(m.Offered == m.Accepted + m.Rejected + m.Dropped, "offered != accepted + rejected + dropped: " + Describe(m));
        long windowed = m.Accepted - m.Late - m.FaultedPoints - m.StalePoints;
        foreach (SinkMetrics s in m.Sinks)
        {
            long ended = s.PointsWritten + s.PointsFailed + s.PointsDropped + s.PointsAbandoned;
            Assert.True(ended == windowed, $"sink {s.Name}: written + failed + dropped + abandoned = {ended} points, the engine windowed {windowed}: " + Describe(m));
        }
    }

    /// <summary>Writes one point every millisecond or two (engine-stamped) until cancelled; returns how many were taken.</summary>
    private static Task<long> WriteUntilAsync(MetricHistogram histogram, CancellationToken stop) => Task.Run(async () =>
    {
        long taken = 0;
        for (int i = 0; !stop.IsCancellationRequested; i++)
        {
            if (histogram.Record(0.001 * (i % 1000), "w") == RejectReason.None)
            {
                taken++;
            }

            if (i % 8 == 0)
            {
                await Task.Delay(2, CancellationToken.None);
            }
        }

        return taken;
    });

    private static async Task<HealthStatus> EngineStatusAsync(IHost host) => (await EngineReportAsync(host)).Status;

    private static async Task<HealthReportEntry> EngineReportAsync(IHost host)
    {
        HealthReport report = await host.Services.GetRequiredService<HealthCheckService>()
            .CheckHealthAsync(r => r.Name == EngineCheck).WaitAsync(TimeSpan.FromSeconds(30));
        return report.Entries[EngineCheck];
    }

    /// <summary>Polls the engine's check until it reports <paramref name="wanted"/>; returns every status seen, in order, without repeats.</summary>
    private static async Task<List<HealthStatus>> PollEngineHealthUntilAsync(IHost host, HealthStatus wanted, TimeSpan timeout, string what)
    {
        var seen = new List<HealthStatus>();
        var described = new List<string>();
        DateTime deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            HealthReportEntry entry = await EngineReportAsync(host);
            HealthStatus status = entry.Status;
            if (seen.Count == 0 || seen[^1] != status)
            {
                seen.Add(status);
                described.Add($"{status} ({entry.Description})");
            }

            if (status == wanted)
            {
                return seen;
            }

            if (DateTime.UtcNow > deadline)
            {
                Assert.Fail($"{what}: the engine's check never became {wanted} within {timeout}; it went {string.Join(" -> ", described)}");
            }

            await Task.Delay(50);
        }
    }

    private static SinkMetrics Sink(PipelineMetrics m, string name) => m.Sinks.Single(s => s.Name == name);

    // ---------------------------------------------------------------- 1. the hosted service with hostile sinks

    [Fact]
    public async Task HostStop_SinkHangingForeverIgnoringItsToken_StopEndsAtTheHostTimeout_LeftoversAbandonedCountedAndWarned()
    {
        // sdk.md, "Shutdown and logging": "The host's shutdown timeout (HostOptions.ShutdownTimeout) is the second stop
        // signal: when it passes, what is left is abandoned at once, counted per sink (SinkMetrics.BatchesAbandoned), and
        // logged as a warning." The sink here never returns, from WriteAsync or CompleteAsync, whatever its token says.
        var sink = new HangingSink(hangOnComplete: true);
        var logs = new ListLoggerProvider();
        using IHost host = BuildHost(Settings(("Sinks:AttemptTimeout", "-00:00:00.001"), ("Pipeline:ShutdownTimeout", "00:05:00")),
            TimeSpan.FromSeconds(2), s => s.AddSingleton<IWindowSink>(sink), logs);
        await host.StartAsync().WaitAsync(TimeSpan.FromSeconds(20));
        MetricsCollector collector = host.Services.GetRequiredService<MetricsCollector>();
        MetricsPipeline pipeline = collector.Pipeline;
        MetricHistogram h = collector.CreateHistogram("probe13_hang_seconds", ["k"]);
        using (var writing = new CancellationTokenSource())
        {
            Task<long> writer = WriteUntilAsync(h, writing.Token);
            await sink.FirstCall.WaitAsync(TimeSpan.FromSeconds(30));
            await writing.CancelAsync();
            await writer.WaitAsync(TimeSpan.FromSeconds(30));
        }

        var stopwatch = Stopwatch.StartNew();
        Task stop = host.StopAsync();
        Task first = await Task.WhenAny(stop, Task.Delay(TimeSpan.FromSeconds(40)));
        TimeSpan took = stopwatch.Elapsed;
        Assert.True(first == stop, $"the host's stop did not end within 40 s with a 2 s shutdown timeout: {Describe(pipeline.GetMetrics())}");
        Exception? stopError = await Record.ExceptionAsync(() => stop);

        PipelineMetrics m = pipeline.GetMetrics();
        SinkMetrics hanging = Sink(m, sink.Name);
        Assert.True(hanging.BatchesWritten == 0, Describe(m));
        Assert.True(hanging.BatchesAbandoned >= 1, $"the window the sink was in when the timeout passed was not counted abandoned (stop error: {stopError?.GetType().Name}): " + Describe(m));
        Assert.Equal(PipelineState.Stopped, m.State);
        AssertEveryPointAccountedForEverySink(m);
        Assert.True(logs.Entries.Any(e => e.Level == LogLevel.Warning && e.Category.Contains(nameof(MonitoringStreamHostedService), StringComparison.Ordinal)),
            "no warning from MonitoringStreamHostedService after a stop forced by the host's timeout; logged: " +
            string.Join(" | ", logs.Entries.Where(e => e.Level >= LogLevel.Information).Select(e => $"{e.Level} {e.Category}: {e.Message}")));
        Assert.True(took < TimeSpan.FromSeconds(30), $"the stop took {took} with a 2 s host shutdown timeout");
    }

    [Fact]
    public async Task HostStop_PipelineShutdownTimeoutShorterThanTheHosts_HangingSink_StopEndsAtThePipelineTimeout_AbandonedCounted()
    {
        // README, "Stopping": the graceful stop "is bounded by MetricsPipelineOptions.ShutdownTimeout ... past it,
        // TimeoutException", and each window a sink did not get is counted abandoned. The host here would wait a minute.
        var sink = new HangingSink(hangOnComplete: true);
        using IHost host = BuildHost(Settings(("Sinks:AttemptTimeout", "-00:00:00.001"), ("Pipeline:ShutdownTimeout", "00:00:02")),
            TimeSpan.FromSeconds(60), s => s.AddSingleton<IWindowSink>(sink));
        await host.StartAsync().WaitAsync(TimeSpan.FromSeconds(20));
        MetricsCollector collector = host.Services.GetRequiredService<MetricsCollector>();
        MetricHistogram h = collector.CreateHistogram("probe13_pipeline_timeout", ["k"]);
        using (var writing = new CancellationTokenSource())
        {
            Task<long> writer = WriteUntilAsync(h, writing.Token);
            await sink.FirstCall.WaitAsync(TimeSpan.FromSeconds(30));
            await writing.CancelAsync();
            await writer.WaitAsync(TimeSpan.FromSeconds(30));
        }

        var stopwatch = Stopwatch.StartNew();
        Task stop = host.StopAsync();
        Assert.True(await Task.WhenAny(stop, Task.Delay(TimeSpan.FromSeconds(45))) == stop, "the host's stop did not end within 45 s with a 2 s pipeline shutdown timeout");
        TimeSpan took = stopwatch.Elapsed;
        await Record.ExceptionAsync(() => stop);
        PipelineMetrics m = collector.Pipeline.GetMetrics();
        Assert.True(took < TimeSpan.FromSeconds(40), $"the stop took {took}: it waited for the host's 60 s, not the pipeline's 2 s");
        Assert.Equal(PipelineState.Stopped, m.State);
        Assert.True(Sink(m, sink.Name).BatchesAbandoned >= 1, Describe(m));
        AssertEveryPointAccountedForEverySink(m);
    }

    [Fact]
    public async Task HostRun_SinkThatThrowsOnEveryCall_WindowsFailedAfterTheirAttempts_EngineGoesUnhealthy_GracefulStopPrompt_QueriesExact()
    {
        // README: "Every window ends in exactly one of written, failed, dropped or abandoned for each sink"; sinks are
        // independent (the index still answers). sdk.md, Health: "a sink dropping or giving up windows: unhealthy at once";
        // HealthMetricsPublisher, "called by the dashboard", records monitoring_health_status{check} (0 unhealthy) and
        // monitoring_health_check_duration_seconds{check}, check="overall" for the aggregate.
        var sink = new FlakySink(failing: true);
        using IHost host = BuildHost(Settings(("Sinks:MaxAttempts", "3"), ("Sinks:InitialBackoff", "00:00:00.005"), ("Sinks:MaxBackoff", "00:00:00.020")),
            TimeSpan.FromSeconds(60), s => s.AddSingleton<IWindowSink>(sink));
        await host.StartAsync().WaitAsync(TimeSpan.FromSeconds(20));
        MetricsCollector collector = host.Services.GetRequiredService<MetricsCollector>();
        MetricsPipeline pipeline = collector.Pipeline;
        MetricHistogram h = collector.CreateHistogram("probe13_throw_seconds", ["k"]);
        long written;
        using (var writing = new CancellationTokenSource())
        {
            Task<long> writer = WriteUntilAsync(h, writing.Token);
            await Eventually.TrueAsync(() => Sink(pipeline.GetMetrics(), sink.Name).BatchesFailed >= 2, "two windows failed by the throwing sink", TimeSpan.FromSeconds(30));
            List<HealthStatus> seen = await PollEngineHealthUntilAsync(host, HealthStatus.Unhealthy, TimeSpan.FromSeconds(30), "sink giving up windows");
            Assert.NotEmpty(seen);
            DashboardData dashboard = await host.Services.GetRequiredService<DashboardDataService>().GetAsync(TimeSpan.FromMinutes(5)).WaitAsync(TimeSpan.FromSeconds(30));
            SinkData flaky = dashboard.Engine.Sinks.Single(s => s.Name == sink.Name);
            Assert.Contains("downstream refused", flaky.LastError ?? "(none)", StringComparison.Ordinal);
            Assert.True(flaky.BatchesLost >= 2, $"dashboard batchesLost {flaky.BatchesLost}");
            await writing.CancelAsync();
            written = await writer.WaitAsync(TimeSpan.FromSeconds(30));
        }

        var stopwatch = Stopwatch.StartNew();
        await host.StopAsync().WaitAsync(TimeSpan.FromSeconds(40));
        Assert.True(stopwatch.Elapsed < TimeSpan.FromSeconds(30), $"a graceful stop with a sink that fails fast took {stopwatch.Elapsed}");

        PipelineMetrics m = pipeline.GetMetrics();
        SinkMetrics failed = Sink(m, sink.Name);
        SinkMetrics index = Sink(m, host.Services.GetRequiredService<RecentWindowIndex>().Name);
        Assert.True(failed.BatchesWritten == 0 && failed.BatchesAbandoned == 0 && failed.BatchesDropped == 0, Describe(m));
        Assert.True(failed.BatchesFailed == index.BatchesWritten, "every window the index took failed for the throwing sink: " + Describe(m));
        Assert.True(failed.Errors == failed.BatchesFailed * 3, $"3 attempts per failed window, {failed.Errors} errors for {failed.BatchesFailed} windows");
        Assert.Equal(failed.Errors, sink.Attempts);
        AssertEveryPointAccountedForEverySink(m);

        MetricStatisticsService queries = host.Services.GetRequiredService<MetricStatisticsService>();
        MetricStatistics? all = queries.GetMatching("probe13_throw_seconds", LabelSet.Empty, TimeSpan.FromMinutes(10));
        Assert.NotNull(all);
        Assert.True(all.Count == written, $"the index holds {all.Count} points, {written} were taken: " + Describe(m));

        // The dashboard's health run was recorded (its value: see the FINDING test below; the check it ran followed the
        // poll that had just seen Unhealthy, so it said Degraded or Healthy).
        Assert.NotNull(queries.GetStatistics(HealthMetricsPublisher.StatusMetric, LabelSet.Create(new Label("check", EngineCheck)), TimeSpan.FromMinutes(10)));
        Assert.NotNull(queries.GetStatistics(HealthMetricsPublisher.StatusMetric, LabelSet.Create(new Label("check", "overall")), TimeSpan.FromMinutes(10)));
        Assert.NotNull(queries.GetStatistics(HealthMetricsPublisher.DurationMetric, LabelSet.Create(new Label("check", EngineCheck)), TimeSpan.FromMinutes(10)));
    }

    [Fact]
    public async Task HostRun_SinkThatThrowsThenRecovers_DegradedWhileRetrying_HealthyAfter_EveryWindowWrittenExactlyOnce()
    {
        // sdk.md, Health: "a sink retrying (its last attempt failed): degraded at once", no unhealthy column; README: a
        // window is retried by the sink's policy and ends written once.
        var sink = new FlakySink(failing: true);
        using IHost host = BuildHost(Settings(("Sinks:MaxAttempts", "1000000"), ("Sinks:InitialBackoff", "00:00:00.010"), ("Sinks:MaxBackoff", "00:00:00.050")),
            TimeSpan.FromSeconds(60), s => s.AddSingleton<IWindowSink>(sink));
        await host.StartAsync().WaitAsync(TimeSpan.FromSeconds(20));
        MetricsCollector collector = host.Services.GetRequiredService<MetricsCollector>();
        MetricsPipeline pipeline = collector.Pipeline;
        MetricHistogram h = collector.CreateHistogram("probe13_recover_seconds", ["k"]);
        long written;
        using (var writing = new CancellationTokenSource())
        {
            Task<long> writer = WriteUntilAsync(h, writing.Token);
            await Eventually.TrueAsync(() => sink.Attempts >= 3, "the failing sink was tried three times", TimeSpan.FromSeconds(30));
            List<HealthStatus> failing = await PollEngineHealthUntilAsync(host, HealthStatus.Degraded, TimeSpan.FromSeconds(30), "sink retrying");
            Assert.DoesNotContain(HealthStatus.Unhealthy, failing);
            for (int i = 0; i < 10; i++)
            {
                HealthStatus s = await EngineStatusAsync(host);
                Assert.True(s == HealthStatus.Degraded, $"while the sink kept failing (attempt {sink.Attempts}) the engine's check said {s}: " + Describe(pipeline.GetMetrics()));
                await Task.Delay(50);
            }

            sink.Failing = false;
            await Eventually.TrueAsync(() => sink.Taken >= 3, "the recovered sink took three windows", TimeSpan.FromSeconds(30));
            List<HealthStatus> recovering = await PollEngineHealthUntilAsync(host, HealthStatus.Healthy, TimeSpan.FromSeconds(30), "sink recovered");
            Assert.DoesNotContain(HealthStatus.Unhealthy, recovering);
            await writing.CancelAsync();
            written = await writer.WaitAsync(TimeSpan.FromSeconds(30));
        }

        await host.StopAsync().WaitAsync(TimeSpan.FromSeconds(40));
        PipelineMetrics m = pipeline.GetMetrics();
        SinkMetrics flaky = Sink(m, sink.Name);
        SinkMetrics index = Sink(m, host.Services.GetRequiredService<RecentWindowIndex>().Name);
        Assert.True(flaky.BatchesFailed == 0 && flaky.BatchesWritten == index.BatchesWritten && flaky.PointsWritten == index.PointsWritten, Describe(m));
        Assert.True(sink.Taken == flaky.BatchesWritten && sink.TakenPoints == flaky.PointsWritten, $"the sink took {sink.Taken} batches / {sink.TakenPoints} points: " + Describe(m));
        Assert.Empty(sink.Duplicates);
        Assert.True(flaky.Errors >= 3 && flaky.Errors == sink.Attempts - sink.Taken, $"errors {flaky.Errors}, attempts {sink.Attempts}, taken {sink.Taken}");
        AssertEveryPointAccountedForEverySink(m);
        MetricStatistics? mine = host.Services.GetRequiredService<MetricStatisticsService>().GetMatching("probe13_recover_seconds", LabelSet.Empty, TimeSpan.FromMinutes(10));
        Assert.True(mine?.Count == written, $"{written} points taken, the index holds {mine?.Count}");
    }

    [Fact]
    public async Task Health_SinkGivingUpEveryWindow_UnhealthyForEveryConsumer_NotOnlyTheFirstCheckAfterAGiveUp()
    {
        // sdk.md, Health: "a sink dropping or giving up windows: unhealthy at once" (no "since the previous check", unlike
        // the drop and late rates). The engine's check is one object shared by /health, the dashboard (which "runs the
        // health checks") and the HealthMetricsPublisher; a sink that has given up every window it ever got and written none
        // is still "giving up windows" for each of them.
        var sink = new FlakySink(failing: true);
        using IHost host = BuildHost(Settings(("Sinks:MaxAttempts", "2"), ("Sinks:InitialBackoff", "00:00:00.005"), ("Sinks:MaxBackoff", "00:00:00.010")),
            TimeSpan.FromSeconds(60), s => s.AddSingleton<IWindowSink>(sink));
        await host.StartAsync().WaitAsync(TimeSpan.FromSeconds(20));
        MetricsCollector collector = host.Services.GetRequiredService<MetricsCollector>();
        MetricHistogram h = collector.CreateHistogram("probe13_giveup_seconds", ["k"]);
        using (var writing = new CancellationTokenSource())
        {
            Task<long> writer = WriteUntilAsync(h, writing.Token);
            await Eventually.TrueAsync(() => Sink(collector.Pipeline.GetMetrics(), sink.Name).BatchesFailed >= 2, "two windows given up", TimeSpan.FromSeconds(30));
            await PollEngineHealthUntilAsync(host, HealthStatus.Unhealthy, TimeSpan.FromSeconds(30), "sink giving up windows");
            HealthStatus loadBalancer = await EngineStatusAsync(host);
            DashboardData page = await host.Services.GetRequiredService<DashboardDataService>().GetAsync(TimeSpan.FromMinutes(5)).WaitAsync(TimeSpan.FromSeconds(30));
            await writing.CancelAsync();
            await writer.WaitAsync(TimeSpan.FromSeconds(30));
            SinkMetrics s = Sink(collector.Pipeline.GetMetrics(), sink.Name);
            Assert.True(loadBalancer == HealthStatus.Unhealthy && page.Health?.Status == "Unhealthy",
                $"a sink that gave up {s.BatchesFailed} windows and wrote {s.BatchesWritten} (state {s.State}): the next check said {loadBalancer}, the dashboard's {page.Health?.Status}");
        }

        await host.StopAsync().WaitAsync(TimeSpan.FromSeconds(40));
    }

    [Fact]
    public async Task HealthPublisher_RunByTheFramework_UserChecksThatThrowOrTimeOut_UnhealthyWithTheirError_EachRecordedAsAMetric()
    {
        // sdk.md, Health: "a check that throws, or passes its registration's timeout, is Unhealthy with its error";
        // HealthMetricsPublisher is "registered as an IHealthCheckPublisher" and "records each result as
        // monitoring_health_status{check} — 2 healthy, 1 degraded, 0 unhealthy ...; check="overall" for the aggregate — and
        // monitoring_health_check_duration_seconds{check}". Here the framework's own publisher loop runs it (no dashboard).
        using IHost host = BuildHost(Settings(("Pipeline:AllowedLateness", "00:00:01")), TimeSpan.FromSeconds(30), s =>
        {
            s.Configure<HealthCheckPublisherOptions>(o =>
            {
                o.Delay = TimeSpan.FromMilliseconds(100);
                o.Period = TimeSpan.FromSeconds(1);
                o.Timeout = TimeSpan.FromSeconds(20);
            });
            s.AddHealthChecks()
                .AddCheck("probe13-throws", () => throw new InvalidOperationException("probe13 database gone"))
                .AddAsyncCheck("probe13-times-out", async ct =>
                {
                    await Task.Delay(Timeout.Infinite, ct);
                    return HealthCheckResult.Healthy();
                }, timeout: TimeSpan.FromMilliseconds(200))
                .AddCheck("probe13-degraded", () => HealthCheckResult.Degraded("slow"));
        });
        await host.StartAsync().WaitAsync(TimeSpan.FromSeconds(20));
        HealthMetricsPublisher publisher = host.Services.GetRequiredService<HealthMetricsPublisher>();
        await Eventually.TrueAsync(() => publisher.LastReport is not null, "the framework published a health report", TimeSpan.FromSeconds(30));
        HealthReport report = publisher.LastReport!;
        Assert.Equal(HealthStatus.Unhealthy, report.Status);
        Assert.Equal(HealthStatus.Unhealthy, report.Entries["probe13-throws"].Status);
        Assert.Contains("probe13 database gone", report.Entries["probe13-throws"].Exception?.Message ?? report.Entries["probe13-throws"].Description ?? "", StringComparison.Ordinal);
        Assert.Equal(HealthStatus.Unhealthy, report.Entries["probe13-times-out"].Status);
        Assert.Equal(HealthStatus.Degraded, report.Entries["probe13-degraded"].Status);
        Assert.Equal(HealthStatus.Healthy, report.Entries[EngineCheck].Status);
        await host.StopAsync().WaitAsync(TimeSpan.FromSeconds(40));

        MetricStatisticsService queries = host.Services.GetRequiredService<MetricStatisticsService>();
        (string Check, double Status)[] expected = [("probe13-throws", 0), ("probe13-times-out", 0), ("probe13-degraded", 1), (EngineCheck, 2), ("overall", 0)];
        foreach ((string check, double status) in expected)
        {
            MetricStatistics? recorded = queries.GetStatistics(HealthMetricsPublisher.StatusMetric, LabelSet.Create(new Label("check", check)), TimeSpan.FromMinutes(10));
            Assert.True(recorded is not null && recorded.Min == status && recorded.Max == status,
                $"monitoring_health_status{{check=\"{check}\"}}: min {recorded?.Min} max {recorded?.Max}, expected {status}");
            if (check != "overall")
            {
                MetricStatistics? duration = queries.GetStatistics(HealthMetricsPublisher.DurationMetric, LabelSet.Create(new Label("check", check)), TimeSpan.FromMinutes(10));
                Assert.True(duration is not null && duration.Min >= 0, $"monitoring_health_check_duration_seconds{{check=\"{check}\"}}: {duration?.Min}");
            }
        }
    }

    // ---------------------------------------------------------------- 2. health of a stalled sink

    [Fact]
    public async Task Health_StalledSink_DegradedThenUnhealthyByTheConfiguredSpans_DashboardStillAnswers_HealthyOnceItWritesAgain()
    {
        // sdk.md, Health: "a sink stalled: windows pending, none written" is degraded from Health:SinkStalledDegradedAfter
        // and unhealthy from Health:SinkStalledUnhealthyAfter (here 1 s and 15 s); the dashboard "runs the health checks".
        var sink = new BlockingSink();
        using IHost host = BuildHost(Settings(("Sinks:AttemptTimeout", "-00:00:00.001"), ("Health:SinkStalledDegradedAfter", "00:00:01"),
            ("Health:SinkStalledUnhealthyAfter", "00:00:15")), TimeSpan.FromSeconds(60), s => s.AddSingleton<IWindowSink>(sink));
        await host.StartAsync().WaitAsync(TimeSpan.FromSeconds(20));
        MetricsCollector collector = host.Services.GetRequiredService<MetricsCollector>();
        MetricsPipeline pipeline = collector.Pipeline;
        MetricHistogram h = collector.CreateHistogram("probe13_stall_seconds", ["k"]);
        Assert.Equal(HealthStatus.Healthy, await EngineStatusAsync(host));
        long written;
        using (var writing = new CancellationTokenSource())
        {
            Task<long> writer = WriteUntilAsync(h, writing.Token);
            await sink.FirstWriteStarted.WaitAsync(TimeSpan.FromSeconds(30));
            List<HealthStatus> degrading = await PollEngineHealthUntilAsync(host, HealthStatus.Degraded, TimeSpan.FromSeconds(60), "sink stalled for 1 s");
            Assert.True(!degrading.Contains(HealthStatus.Unhealthy), $"a stalled sink should go degraded (1 s) before unhealthy (15 s); seen {string.Join(" -> ", degrading)}");
            await PollEngineHealthUntilAsync(host, HealthStatus.Unhealthy, TimeSpan.FromSeconds(90), "sink stalled for 15 s");

            DashboardData data = await host.Services.GetRequiredService<DashboardDataService>().GetAsync(TimeSpan.FromMinutes(5)).WaitAsync(TimeSpan.FromSeconds(30));
            Assert.Equal("Unhealthy", data.Health?.Status);
            SinkData blocked = data.Engine.Sinks.Single(s => s.Name == sink.Name);
            Assert.True(blocked.BatchesWritten == 0 && blocked.QueueDepth >= 1, $"dashboard: {blocked}");
            Assert.True(data.Engine.Accepted > 0, "dashboard engine figures while a sink is stalled");

            sink.Release();
            List<HealthStatus> recovering = await PollEngineHealthUntilAsync(host, HealthStatus.Healthy, TimeSpan.FromSeconds(60), "sink released");
            Assert.NotEmpty(recovering);
            await writing.CancelAsync();
            written = await writer.WaitAsync(TimeSpan.FromSeconds(30));
        }

        await host.StopAsync().WaitAsync(TimeSpan.FromSeconds(40));
        PipelineMetrics m = pipeline.GetMetrics();
        Assert.True(Sink(m, sink.Name).PointsWritten == Sink(m, host.Services.GetRequiredService<RecentWindowIndex>().Name).PointsWritten, Describe(m));
        AssertEveryPointAccountedForEverySink(m);
        MetricStatistics? mine = host.Services.GetRequiredService<MetricStatisticsService>().GetMatching("probe13_stall_seconds", LabelSet.Empty, TimeSpan.FromMinutes(10));
        Assert.True(mine?.Count == written, $"{written} points taken, the index holds {mine?.Count}");
    }

    [Fact]
    public async Task Health_LatePointsOverTheRateWindow_DegradedAndUnhealthyByTheConfiguredRates_ForEveryCaller_HealthyOnceTheyLeaveIt()
    {
        // sdk.md, Health: "points late over the rate window: degraded from 1 % of accepted, unhealthy from 10 %" (here
        // Health:LateRateDegraded 0.1 and Health:LateRateUnhealthy 0.5, Health:RateWindow 2 s); a point is late when its
        // window has closed. (Written against "since the previous check" first; session 13 made every caller see the same.)
        using IHost host = BuildHost(Settings(("Health:LateRateDegraded", "0.1"), ("Health:LateRateUnhealthy", "0.5"), ("Health:RateWindow", "00:00:02"),
            ("SelfMetricsInterval", "1.00:00:00")),
            TimeSpan.FromSeconds(30));
        await host.StartAsync().WaitAsync(TimeSpan.FromSeconds(20));
        MetricsCollector collector = host.Services.GetRequiredService<MetricsCollector>();
        MetricsPipeline pipeline = collector.Pipeline;
        MetricHistogram opener = collector.CreateHistogram("probe13_late_opener", ["k"]);
        MetricHistogram h = collector.CreateHistogram("probe13_late_seconds", ["k"]);
        long past = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() - 30_000;
        Assert.Equal(RejectReason.None, opener.RecordAt(past, 1, "x"));
        Assert.Equal(RejectReason.None, opener.Record(1, "now"));
        collector.Flush();
        MetricStatisticsService queries = host.Services.GetRequiredService<MetricStatisticsService>();
        await Eventually.TrueAsync(() => queries.GetStatistics("probe13_late_opener", LabelSet.Create(new Label("k", "x")), TimeSpan.FromHours(1)) is not null,
            "the window 30 s back closed", TimeSpan.FromSeconds(30));
        Assert.Equal(HealthStatus.Healthy, await EngineStatusAsync(host));   // the baseline: nothing late yet

        async Task WriteAsync(int late, int onTime)
        {
            long lateBefore = pipeline.GetMetrics().Late;
            for (int i = 0; i < late; i++)
            {
                Assert.Equal(RejectReason.None, h.RecordAt(past + 1, i, "late"));
            }

            for (int i = 0; i < onTime; i++)
            {
                Assert.Equal(RejectReason.None, h.Record(i, "on-time"));
            }

            collector.Flush();
            await Eventually.TrueAsync(() => pipeline.GetMetrics().Late - lateBefore == late && pipeline.GetMetrics().Queued == 0,
                $"{late} points counted late: " + Describe(pipeline.GetMetrics()), TimeSpan.FromSeconds(30));
        }

        await WriteAsync(late: 30, onTime: 170);    // 15 %
        HealthReportEntry degraded = await EngineReportAsync(host);
        Assert.True(degraded.Status == HealthStatus.Degraded, $"15 % late in the rate window: {degraded.Status} ({degraded.Description})");
        HealthReportEntry again = await EngineReportAsync(host);
        Assert.True(again.Status == HealthStatus.Degraded, $"a second caller right after: {again.Status} ({again.Description})");

        // Two to four seconds on (one to two rate windows, whoever checks in between), nothing late is left in it.
        HealthReportEntry quiet = again;
        var waiting = System.Diagnostics.Stopwatch.StartNew();
        while (quiet.Status != HealthStatus.Healthy && waiting.Elapsed < TimeSpan.FromSeconds(20))
        {
            await Task.Delay(250);
            quiet = await EngineReportAsync(host);
        }

        Assert.True(quiet.Status == HealthStatus.Healthy, $"nothing late in the rate window: {quiet.Status} ({quiet.Description})");
        Assert.True(waiting.Elapsed >= TimeSpan.FromSeconds(1), $"healthy again after {waiting.Elapsed.TotalSeconds:0.0} s, less than a rate window");
        await WriteAsync(late: 180, onTime: 20);    // 90 %
        HealthReportEntry unhealthy = await EngineReportAsync(host);
        Assert.True(unhealthy.Status == HealthStatus.Unhealthy, $"90 % late in the rate window: {unhealthy.Status} ({unhealthy.Description})");
        await host.StopAsync().WaitAsync(TimeSpan.FromSeconds(40));
        AssertEveryPointAccountedForEverySink(pipeline.GetMetrics());
    }

    [Fact]
    public async Task Health_SixteenConcurrentChecksWhileASinkFails_NeverThrow_EachAnswersWithADocumentedStatus()
    {
        // The engine's check is one object behind /health, the dashboard and the publisher, which may run at once.
        var sink = new FlakySink(failing: true);
        using IHost host = BuildHost(Settings(("Sinks:MaxAttempts", "2"), ("Sinks:InitialBackoff", "00:00:00.001"), ("Sinks:MaxBackoff", "00:00:00.002")),
            TimeSpan.FromSeconds(30), s => s.AddSingleton<IWindowSink>(sink));
        await host.StartAsync().WaitAsync(TimeSpan.FromSeconds(20));
        MetricHistogram h = host.Services.GetRequiredService<MetricsCollector>().CreateHistogram("probe13_concurrent_checks", ["k"]);
        DashboardDataService dashboard = host.Services.GetRequiredService<DashboardDataService>();
        using (var writing = new CancellationTokenSource())
        {
            Task<long> writer = WriteUntilAsync(h, writing.Token);
            Task[] checks = [.. Enumerable.Range(0, 16).Select(i => Task.Run(async () =>
            {
                for (int n = 0; n < 20; n++)
                {
                    if (i % 4 == 0)
                    {
                        DashboardData d = await dashboard.GetAsync(TimeSpan.FromMinutes(1));
                        Assert.Contains(d.Health?.Status, (string?[])["Healthy", "Degraded", "Unhealthy"]);
                    }
                    else
                    {
                        HealthStatus status = await EngineStatusAsync(host);
                        Assert.True(Enum.IsDefined(status));
                    }
                }
            }))];
            Task all = Task.WhenAll(checks);
            Assert.True(await Task.WhenAny(all, Task.Delay(TimeSpan.FromSeconds(90))) == all, "320 concurrent checks did not end within 90 s");
            await all;
            await writing.CancelAsync();
            await writer.WaitAsync(TimeSpan.FromSeconds(30));
        }

        await host.StopAsync().WaitAsync(TimeSpan.FromSeconds(40));
        AssertEveryPointAccountedForEverySink(host.Services.GetRequiredService<MetricsPipeline>().GetMetrics());
    }

    /// <summary>A host with <paramref name="sink"/>, stall thresholds of 3 s and 6 s, no publisher runs and no self-metrics.</summary>
    private static IHost StallHost(IWindowSink sink) =>
        BuildHost(Settings(("Sinks:AttemptTimeout", "-00:00:00.001"), ("Health:SinkStalledDegradedAfter", "00:00:03"),
            ("Health:SinkStalledUnhealthyAfter", "00:00:06"), ("SelfMetricsInterval", "1.00:00:00")), TimeSpan.FromSeconds(30), s =>
        {
            s.AddSingleton<IWindowSink>(sink);
            s.Configure<HealthCheckPublisherOptions>(o => o.Delay = TimeSpan.FromHours(1));
        });

    /// <summary>Eight seconds without traffic, the engine's check asked every half second when <paramref name="checkedWhileQuiet"/>.</summary>
    private static async Task QuietForEightSecondsAsync(IHost host, bool checkedWhileQuiet)
    {
        var quiet = Stopwatch.StartNew();
        while (quiet.Elapsed < TimeSpan.FromSeconds(8))
        {
            if (checkedWhileQuiet)
            {
                Assert.Equal(HealthStatus.Healthy, await EngineStatusAsync(host));
            }

            await Task.Delay(500);
        }
    }

    /// <summary>Writes until the sink's window blocks (<paramref name="blocked"/>), then asks the engine's check at once.</summary>
    private static async Task<(HealthReportEntry AtStall, TimeSpan CheckedAfter)> WriteUntilBlockedThenCheckAsync(IHost host, MetricHistogram h, Task blocked)
    {
        HealthReportEntry atStall;
        var sinceStall = Stopwatch.StartNew();
        using (var writing = new CancellationTokenSource())
        {
            Task<long> writer = WriteUntilAsync(h, writing.Token);
            await blocked.WaitAsync(TimeSpan.FromSeconds(30));
            sinceStall.Restart();
            atStall = await EngineReportAsync(host);
            await writing.CancelAsync();
            await writer.WaitAsync(TimeSpan.FromSeconds(30));
        }

        return (atStall, sinceStall.Elapsed);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Health_SinkThatStallsAfterALongQuietSpell_StallTimedFromWhenWindowsBecamePending_NotFromItsLastWrite(bool checkedWhileQuiet)
    {
        // sdk.md, Health: "a sink stalled: windows pending, none written" is degraded from SinkStalledDegradedAfter (here
        // 3 s) and unhealthy from SinkStalledUnhealthyAfter (here 6 s). A sink that had nothing to do for 8 s (no traffic)
        // and then blocks on its first window has been stalled for no time at all at that moment.
        var sink = new BlockingSink();
        using IHost host = StallHost(sink);
        await host.StartAsync().WaitAsync(TimeSpan.FromSeconds(20));
        MetricsCollector collector = host.Services.GetRequiredService<MetricsCollector>();
        MetricHistogram h = collector.CreateHistogram("probe13_quiet_seconds", ["k"]);
        await QuietForEightSecondsAsync(host, checkedWhileQuiet);

        Assert.Equal(0, collector.Pipeline.GetMetrics().WindowsEmitted);
        (HealthReportEntry atStall, TimeSpan checkedAfter) = await WriteUntilBlockedThenCheckAsync(host, h, sink.FirstWriteStarted);
        if (checkedAfter < TimeSpan.FromSeconds(2.5))
        {
            Assert.True(atStall.Status == HealthStatus.Healthy,
                $"{checkedAfter.TotalMilliseconds:F0} ms after the sink's first window blocked, after 8 s without traffic, the engine's check said {atStall.Status}: {atStall.Description}");
        }

        List<HealthStatus> seen = await PollEngineHealthUntilAsync(host, HealthStatus.Unhealthy, TimeSpan.FromSeconds(60), "the stall passing 6 s");
        Assert.NotEmpty(seen);
        sink.Release();
        await host.StopAsync().WaitAsync(TimeSpan.FromSeconds(40));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Health_SinkThatWroteThenIdledThenStalls_StallTimedFromWhenWindowsBecamePending_NotFromItsLastWrite(bool checkedWhileQuiet)
    {
        // As above, for a sink that wrote windows, had 8 s without traffic, then blocks on the next window: "windows pending,
        // none written" began when that window arrived, not at its last write 8 s before (SinkStalledUnhealthyAfter 6 s).
        var sink = new GateSink();
        using IHost host = StallHost(sink);
        await host.StartAsync().WaitAsync(TimeSpan.FromSeconds(20));
        MetricsCollector collector = host.Services.GetRequiredService<MetricsCollector>();
        MetricsPipeline pipeline = collector.Pipeline;
        MetricHistogram h = collector.CreateHistogram("probe13_idle_then_stall", ["k"]);
        using (var writing = new CancellationTokenSource())
        {
            Task<long> writer = WriteUntilAsync(h, writing.Token);
            await Eventually.TrueAsync(() => sink.Written >= 2, "the sink wrote two windows", TimeSpan.FromSeconds(30));
            await writing.CancelAsync();
            await writer.WaitAsync(TimeSpan.FromSeconds(30));
        }

        await Eventually.TrueAsync(() => pipeline.GetMetrics().OpenWindowPoints == 0 && Sink(pipeline.GetMetrics(), sink.Name).QueueDepth == 0,
            "every window of the first traffic written", TimeSpan.FromSeconds(60));
        Assert.Equal(HealthStatus.Healthy, await EngineStatusAsync(host));
        await QuietForEightSecondsAsync(host, checkedWhileQuiet);

        sink.Shut();
        (HealthReportEntry atStall, TimeSpan checkedAfter) = await WriteUntilBlockedThenCheckAsync(host, h, sink.Blocked);
        try
        {
            if (checkedAfter < TimeSpan.FromSeconds(2.5))
            {
                Assert.True(atStall.Status == HealthStatus.Healthy,
                    $"{checkedAfter.TotalMilliseconds:F0} ms after the sink's window blocked, after 8 s without traffic, the engine's check said {atStall.Status}: {atStall.Description}");
            }

            List<HealthStatus> seen = await PollEngineHealthUntilAsync(host, HealthStatus.Unhealthy, TimeSpan.FromSeconds(60), "the stall passing 6 s");
            Assert.NotEmpty(seen);
        }
        finally
        {
            sink.Open();
            await host.StopAsync().WaitAsync(TimeSpan.FromSeconds(40));
        }
    }

    // ---------------------------------------------------------------- 3. options from configuration

    [Theory]
    [InlineData("Pipeline:ShardCount", "0")]
    [InlineData("Pipeline:ShardCount", "1025")]
    [InlineData("Pipeline:ShardCount", "many")]
    [InlineData("Pipeline:WindowSize", "00:00:00")]
    [InlineData("Pipeline:WindowSize", "-00:00:01")]
    [InlineData("Pipeline:WindowSize", "00:00:00.0005")]
    [InlineData("Pipeline:WindowSize", "00:00:01.0005")]
    [InlineData("Pipeline:WindowSize", "367.00:00:00")]
    [InlineData("Pipeline:WindowSize", "abc")]
    [InlineData("Pipeline:AllowedLateness", "-00:00:01")]
    [InlineData("Pipeline:AllowedLateness", "367.00:00:00")]
    [InlineData("Pipeline:BatchSize", "0")]
    [InlineData("Pipeline:BatchSize", "1048577")]
    [InlineData("Pipeline:ShardQueueBatches", "0")]
    [InlineData("Pipeline:ProducerFlushInterval", "00:00:00")]
    [InlineData("Pipeline:ProducerFlushInterval", "01:00:01")]
    [InlineData("Pipeline:TickInterval", "00:00:00")]
    [InlineData("Pipeline:TickInterval", "02:00:00")]
    [InlineData("Pipeline:MaxFutureSkew", "-00:00:01")]
    [InlineData("Pipeline:MaxFutureSkew", "3651.00:00:00")]
    [InlineData("Pipeline:MaxPointAge", "00:00:00")]
    [InlineData("Pipeline:MaxPointAge", "3651.00:00:00")]
    [InlineData("Pipeline:SourceIdleTimeout", "00:00:00")]
    [InlineData("Pipeline:SourceIdleTimeout", "1.00:00:01")]
    [InlineData("Pipeline:ShutdownTimeout", "00:00:00")]
    [InlineData("Pipeline:ShutdownTimeout", "-00:00:01")]
    [InlineData("Pipeline:ShutdownTimeout", "2.00:00:00")]
    [InlineData("Pipeline:SeriesIdleTimeout", "00:00:00.500")]
    [InlineData("Pipeline:SeriesIdleTimeout", "-00:00:01")]
    [InlineData("Pipeline:SeriesIdleTimeout", "367.00:00:00")]
    [InlineData("Pipeline:Sketches", "maybe")]
    [InlineData("Pipeline:SketchRelativeAccuracy", "0")]
    [InlineData("Pipeline:SketchRelativeAccuracy", "0.000001")]
    [InlineData("Pipeline:SketchRelativeAccuracy", "0.6")]
    [InlineData("Pipeline:SketchRelativeAccuracy", "NaN")]
    [InlineData("Pipeline:SketchMaxBins", "15")]
    [InlineData("Pipeline:SketchMaxBins", "1048577")]
    [InlineData("Pipeline:Instance", "")]
    [InlineData("Pipeline:Registry:MaxSeriesPerMetric", "0")]
    [InlineData("Pipeline:Registry:MaxMetrics", "0")]
    [InlineData("Pipeline:Registry:MaxLabelsPerSeries", "-1")]
    [InlineData("Pipeline:Registry:MaxLabelsPerSeries", "129")]
    [InlineData("Pipeline:Registry:MaxNameLength", "0")]
    [InlineData("Pipeline:Registry:MaxLabelValueLength", "0")]
    [InlineData("Sinks:QueueCapacity", "0")]
    [InlineData("Sinks:QueueCapacityBytes", "0")]
    [InlineData("Sinks:QueuePolicy", "Sideways")]
    [InlineData("Sinks:AttemptTimeout", "00:00:00")]
    [InlineData("Sinks:AttemptTimeout", "-00:00:02")]
    [InlineData("Sinks:AttemptTimeout", "1.00:00:01")]
    [InlineData("Sinks:MaxAttempts", "0")]
    [InlineData("Sinks:InitialBackoff", "-00:00:01")]
    [InlineData("Sinks:InitialBackoff", "00:00:11")]            // above MaxBackoff (10 s)
    [InlineData("Sinks:MaxBackoff", "1.00:00:01")]
    [InlineData("ArrowStore:MaxFileBytes", "0")]
    [InlineData("ArrowStore:MaxFileAge", "00:00:00")]
    [InlineData("ArrowStore:Retention", "00:00:00")]
    [InlineData("ArrowStore:MaxTotalBytes", "0")]
    [InlineData("RecentWindows:Retention", "00:00:00")]
    [InlineData("RecentWindows:Retention", "00:00:30")]          // not beyond MaxFileAge + window + lateness
    [InlineData("RecentWindows:MaxAggregates", "0")]
    [InlineData("SystemMetrics:Interval", "00:00:00")]
    [InlineData("SystemMetrics:Interval", "1.00:00:01")]
    [InlineData("SelfMetricsInterval", "00:00:00")]
    [InlineData("SelfMetricsInterval", "1.00:00:01")]
    [InlineData("Bridge:ObservableInterval", "00:00:00")]
    [InlineData("Bridge:ObservableInterval", "1.00:00:01")]
    [InlineData("Source", "")]
    [InlineData("Source", "   ")]
    [InlineData("Pipeline:Instance", "   ")]
    [InlineData("ArrowStore:Directory", "")]
    [InlineData("ArrowStore:Directory", "   ")]
    public async Task Start_EveryDocumentedOptionOutOfItsRange_FailsAtStartNamingTheSetting(string setting, string value)
    {
        // configuration.md, "The engine": "a value outside it stops the service ... with a line naming the setting";
        // sdk.md: options "are validated when the host starts, and a bad value stops the start with a message that names it
        // as configuration spells it". Not at first use, and not as a NullReferenceException.
        using var store = new TempDirectory();
        Dictionary<string, string?> settings = new()
        {
            ["MonitoringStream:SystemMetricsEnabled"] = setting.StartsWith("SystemMetrics:", StringComparison.Ordinal) ? "true" : "false",
            ["MonitoringStream:ArrowStore:Directory"] = store.Path,
            ["MonitoringStream:" + setting] = value,
        };
        Exception? error = null;
        IHost? host = null;
        try
        {
            HostApplicationBuilder builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
            builder.Configuration.AddInMemoryCollection(settings);
            builder.Logging.ClearProviders();
            builder.Services.AddMonitoringStream(o => o.Bridge.Meters.Add("Probe13.Unused." + Guid.NewGuid().ToString("N")));
            host = builder.Build();
            error = await Record.ExceptionAsync(() => host.StartAsync().WaitAsync(TimeSpan.FromSeconds(20)));
            if (error is null)
            {
                await host.StopAsync().WaitAsync(TimeSpan.FromSeconds(20));
            }
        }
        finally
        {
            host?.Dispose();
        }

        Assert.True(error is not null, $"MonitoringStream:{setting} = '{value}' was accepted at start-up");
        Assert.False(error is NullReferenceException or TimeoutException, $"MonitoringStream:{setting} = '{value}': {error}");
        string messages = string.Join(" | ", Flatten(error).Select(e => $"{e.GetType().Name}: {e.Message}"));
        Assert.True(messages.Contains("MonitoringStream:" + setting, StringComparison.Ordinal),
            $"MonitoringStream:{setting} = '{value}' failed without naming the setting: {messages}");
    }

    private static IEnumerable<Exception> Flatten(Exception e)
    {
        yield return e;
        if (e is AggregateException aggregate)
        {
            foreach (Exception inner in aggregate.InnerExceptions.SelectMany(Flatten))
            {
                yield return inner;
            }
        }
        else if (e.InnerException is not null)
        {
            foreach (Exception inner in Flatten(e.InnerException))
            {
                yield return inner;
            }
        }
    }

    [Fact]
    public async Task HostStop_SinkQueueFullShardsBlocked_HangingSink_StopEndsAtTheHostTimeout_EveryPointDroppedWithAReasonOrAccounted()
    {
        // README: a Block queue holds the shards when full; DropNewest writers "never block and count what they drop";
        // sdk.md: the host's shutdown timeout abandons what is left, counted per sink. Here the sink's queue holds one window,
        // the sink never returns, the shards stall behind it and the writers run into full shard queues.
        var sink = new HangingSink();
        using IHost host = BuildHost(Settings(("Sinks:AttemptTimeout", "-00:00:00.001"), ("Sinks:QueueCapacity", "1"), ("Pipeline:ShardQueueBatches", "2"),
            ("Pipeline:BatchSize", "64"), ("Pipeline:WindowSize", "00:00:00.050"), ("Pipeline:ShutdownTimeout", "00:05:00")), TimeSpan.FromSeconds(2), s => s.AddSingleton<IWindowSink>(sink));
        await host.StartAsync().WaitAsync(TimeSpan.FromSeconds(20));
        MetricsCollector collector = host.Services.GetRequiredService<MetricsCollector>();
        MetricsPipeline pipeline = collector.Pipeline;
        MetricHistogram h = collector.CreateHistogram("probe13_full_seconds", ["k"]);
        using (var writing = new CancellationTokenSource())
        {
            Task<long> writer = WriteUntilAsync(h, writing.Token);
            await Eventually.TrueAsync(() => Sink(pipeline.GetMetrics(), sink.Name).State == SinkState.Stalled && pipeline.GetMetrics().Dropped > 0,
                "the sink's full queue holding the shards (Stalled) and writers dropping into full shard queues", TimeSpan.FromSeconds(60));
            List<HealthStatus> seen = await PollEngineHealthUntilAsync(host, HealthStatus.Unhealthy, TimeSpan.FromSeconds(30), "shards blocked behind a full sink queue");
            Assert.NotEmpty(seen);
            DashboardData data = await host.Services.GetRequiredService<DashboardDataService>().GetAsync(TimeSpan.FromMinutes(5)).WaitAsync(TimeSpan.FromSeconds(30));
            PipelineMetrics during = pipeline.GetMetrics();
            await writing.CancelAsync();
            await writer.WaitAsync(TimeSpan.FromSeconds(30));
            string state = data.Engine.Sinks.Single(s => s.Name == sink.Name).State;
            if (state != "Stalled")
            {
                await host.StopAsync().WaitAsync(TimeSpan.FromSeconds(40));
                Assert.Fail($"dashboard state of a sink whose full Block queue holds the shards: {state}; health went {string.Join(" -> ", seen)}; {Describe(during)}; " +
                    $"engine check: {string.Join(", ", host.Services.GetRequiredService<EngineHealthCheck>().LastSinkStates)}");
            }
        }

        Task stop = host.StopAsync();
        Assert.True(await Task.WhenAny(stop, Task.Delay(TimeSpan.FromSeconds(40))) == stop, "the host's stop did not end within 40 s with a 2 s shutdown timeout: " + Describe(pipeline.GetMetrics()));
        await Record.ExceptionAsync(() => stop);
        PipelineMetrics m = pipeline.GetMetrics();
        Assert.True(m.DroppedByReason.GetValueOrDefault(Ingest.DropReason.QueueFull) > 0, Describe(m));
        Assert.True(Sink(m, sink.Name).BatchesAbandoned >= 1, Describe(m));
        AssertEveryPointAccountedForEverySink(m);
    }

    [Fact]
    public async Task HostStop_ZeroShutdownTimeout_OpenWindowsAbandonedAtOnceCountedPerSinkAndWarned()
    {
        // sdk.md: the host's shutdown timeout is the second stop signal; "when it passes, what is left is abandoned at once,
        // counted per sink (SinkMetrics.BatchesAbandoned), and logged as a warning". A timeout of zero has passed already.
        var logs = new ListLoggerProvider();
        using IHost host = BuildHost(Settings(("Pipeline:AllowedLateness", "00:10:00")), TimeSpan.Zero, logs: logs);
        await host.StartAsync().WaitAsync(TimeSpan.FromSeconds(20));
        MetricsCollector collector = host.Services.GetRequiredService<MetricsCollector>();
        MetricHistogram h = collector.CreateHistogram("probe13_zero_seconds", ["k"]);
        long t0 = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() - 60_000;
        for (int i = 0; i < 20_000; i++)
        {
            Assert.Equal(RejectReason.None, h.RecordAt(t0 + (i % 50_000), i % 9, "k" + (i % 50)));
        }

        Task stop = host.StopAsync();
        Assert.True(await Task.WhenAny(stop, Task.Delay(TimeSpan.FromSeconds(40))) == stop, "the host's stop did not end within 40 s with a zero shutdown timeout");
        Exception? stopError = await Record.ExceptionAsync(() => stop);
        PipelineMetrics m = collector.Pipeline.GetMetrics();
        Assert.Equal(PipelineState.Stopped, m.State);
        AssertEveryPointAccountedForEverySink(m);
        SinkMetrics index = Sink(m, host.Services.GetRequiredService<RecentWindowIndex>().Name);
        if (index.PointsAbandoned > 0)
        {
            Assert.True(logs.Entries.Any(e => e.Level == LogLevel.Warning && e.Category.Contains(nameof(MonitoringStreamHostedService), StringComparison.Ordinal)),
                $"{index.BatchesAbandoned} windows abandoned without a warning (stop error: {stopError?.GetType().Name})");
        }
    }

    [Fact]
    public async Task HostRun_DropOldestQueueBehindAHangingSink_WindowsDroppedForThatSinkOnly_ShardsNeverHeld_EngineUnhealthy()
    {
        // README: each sink has its own queue and policy, SinkQueuePolicy.DropOldest; sdk.md, Health: "a sink dropping or
        // giving up windows: unhealthy at once". The other sink (the index) gets every window.
        var sink = new HangingSink();
        // (Sinks: settings apply to every sink, the index too. Windows close in bursts: a thread that wrote and went quiet
        // holds the watermark back until Pipeline:SourceIdleTimeout, and the async writer here hops threads; a burst larger
        // than the queue is dropped for the fast index as well — that is the setting, not a fault. So the idle timeout and
        // the tick are short and the queue holds 32 windows.)
        using IHost host = BuildHost(Settings(("Sinks:AttemptTimeout", "-00:00:00.001"), ("Sinks:QueueCapacity", "32"), ("Sinks:QueuePolicy", "DropOldest"),
            ("Pipeline:WindowSize", "00:00:00.100"), ("Pipeline:TickInterval", "00:00:00.050"), ("Pipeline:SourceIdleTimeout", "00:00:00.200")),
            TimeSpan.FromSeconds(2), s => s.AddSingleton<IWindowSink>(sink));
        await host.StartAsync().WaitAsync(TimeSpan.FromSeconds(20));
        MetricsCollector collector = host.Services.GetRequiredService<MetricsCollector>();
        MetricsPipeline pipeline = collector.Pipeline;
        MetricHistogram h = collector.CreateHistogram("probe13_dropoldest_seconds", ["k"]);
        long written;
        using (var writing = new CancellationTokenSource())
        {
            Task<long> writer = WriteUntilAsync(h, writing.Token);
            await Eventually.TrueAsync(() => Sink(pipeline.GetMetrics(), sink.Name).BatchesDropped >= 3, "three windows dropped for the hanging sink", TimeSpan.FromSeconds(60));
            List<HealthStatus> seen = await PollEngineHealthUntilAsync(host, HealthStatus.Unhealthy, TimeSpan.FromSeconds(30), "a sink dropping windows");
            Assert.NotEmpty(seen);
            await writing.CancelAsync();
            written = await writer.WaitAsync(TimeSpan.FromSeconds(30));
        }

        Task stop = host.StopAsync();
        Assert.True(await Task.WhenAny(stop, Task.Delay(TimeSpan.FromSeconds(40))) == stop, "the host's stop did not end within 40 s");
        await Record.ExceptionAsync(() => stop);
        PipelineMetrics m = pipeline.GetMetrics();
        Assert.True(m.Dropped == 0, "the engine dropped points although only a DropOldest sink was slow: " + Describe(m));
        AssertEveryPointAccountedForEverySink(m);
        MetricStatistics? mine = host.Services.GetRequiredService<MetricStatisticsService>().GetMatching("probe13_dropoldest_seconds", LabelSet.Empty, TimeSpan.FromMinutes(10));
        long late = m.LateByMetric.GetValueOrDefault("probe13_dropoldest_seconds");
        Assert.True(mine?.Count == written - late, $"{written} taken, {late} of them late, the index holds {mine?.Count}: " + Describe(m));
    }

    [Fact]
    public async Task HostStop_SinkBlockingItsThreadInsideWriteAsync_StopStillEndsAtTheHostTimeout()
    {
        // A sink doing synchronous I/O inside WriteAsync blocks the thread that called it. sdk.md: the host's shutdown
        // timeout abandons what is left "at once". Released after the assertions so the thread comes back.
        using var sink = new ThreadBlockingSink();
        try
        {
            using IHost host = BuildHost(Settings(("Sinks:AttemptTimeout", "00:00:01"), ("Pipeline:ShutdownTimeout", "00:05:00")),
                TimeSpan.FromSeconds(2), s => s.AddSingleton<IWindowSink>(sink));
            await host.StartAsync().WaitAsync(TimeSpan.FromSeconds(20));
            MetricsCollector collector = host.Services.GetRequiredService<MetricsCollector>();
            MetricHistogram h = collector.CreateHistogram("probe13_syncblock_seconds", ["k"]);
            using (var writing = new CancellationTokenSource())
            {
                Task<long> writer = WriteUntilAsync(h, writing.Token);
                await sink.FirstCall.WaitAsync(TimeSpan.FromSeconds(30));
                await writing.CancelAsync();
                await writer.WaitAsync(TimeSpan.FromSeconds(30));
            }

            var stopwatch = Stopwatch.StartNew();
            Task stop = host.StopAsync();
            bool ended = await Task.WhenAny(stop, Task.Delay(TimeSpan.FromSeconds(40))) == stop;
            TimeSpan took = stopwatch.Elapsed;
            PipelineMetrics m = collector.Pipeline.GetMetrics();
            Assert.True(ended, $"the host's stop did not end within 40 s (2 s shutdown timeout, 1 s attempt timeout) with a sink blocking its thread: " + Describe(m));
            await Record.ExceptionAsync(() => stop);
            Assert.True(took < TimeSpan.FromSeconds(30), $"the stop took {took}");
            Assert.Equal(PipelineState.Stopped, m.State);
        }
        finally
        {
            sink.Release();
        }
    }

    [Fact]
    public async Task HostRun_SinkThrowingItsOwnOperationCanceledException_RetriedAndFailedLikeAnyError_StopGraceful()
    {
        // IWindowSink: "a thrown exception is retried with backoff"; an HttpClient timeout is a TaskCanceledException that
        // has nothing to do with the sink's token. It must count as a failed attempt, not as a stop, and not end the runner.
        var sink = new OwnTimeoutSink();
        using IHost host = BuildHost(Settings(("Sinks:MaxAttempts", "2"), ("Sinks:InitialBackoff", "00:00:00.005"), ("Sinks:MaxBackoff", "00:00:00.010")),
            TimeSpan.FromSeconds(60), s => s.AddSingleton<IWindowSink>(sink));
        await host.StartAsync().WaitAsync(TimeSpan.FromSeconds(20));
        MetricsCollector collector = host.Services.GetRequiredService<MetricsCollector>();
        MetricsPipeline pipeline = collector.Pipeline;
        MetricHistogram h = collector.CreateHistogram("probe13_owncancel_seconds", ["k"]);
        using (var writing = new CancellationTokenSource())
        {
            Task<long> writer = WriteUntilAsync(h, writing.Token);
            await Eventually.TrueAsync(() => Sink(pipeline.GetMetrics(), sink.Name).BatchesFailed >= 3, "three windows failed by a sink throwing its own cancellation: " + Describe(pipeline.GetMetrics()), TimeSpan.FromSeconds(30));
            await writing.CancelAsync();
            await writer.WaitAsync(TimeSpan.FromSeconds(30));
        }

        await host.StopAsync().WaitAsync(TimeSpan.FromSeconds(40));
        PipelineMetrics m = pipeline.GetMetrics();
        SinkMetrics own = Sink(m, sink.Name);
        SinkMetrics index = Sink(m, host.Services.GetRequiredService<RecentWindowIndex>().Name);
        Assert.True(own.BatchesFailed == index.BatchesWritten && own.BatchesAbandoned == 0 && own.Errors == own.BatchesFailed * 2, Describe(m));
        Assert.Contains("HttpClient.Timeout", own.LastError ?? "(none)", StringComparison.Ordinal);
        AssertEveryPointAccountedForEverySink(m);
    }

    [Fact]
    public async Task HostStop_UserSinkThrowingFromCompleteAndDispose_OtherSinksStillCompleteTheStorePublishesAndAnotherHostReadsIt()
    {
        // README: "Sinks are independent"; a graceful stop makes "every open window reach every sink". A user sink whose
        // CompleteAsync and DisposeAsync throw must not keep the Arrow store from publishing its file.
        using var folder = new TempDirectory();
        var sink = new ThrowOnCloseSink();
        string metric = "probe13_close_seconds";
        long t0 = ((DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() - 300_000) / 1000) * 1000;
        double[] values = [.. Enumerable.Range(0, 100).Select(i => (double)(i % 17))];
        using (IHost a = BuildHost(StoreSettings(folder.Path), TimeSpan.FromSeconds(30), s => s.AddSingleton<IWindowSink>(sink)))
        {
            await a.StartAsync().WaitAsync(TimeSpan.FromSeconds(20));
            MetricHistogram h = a.Services.GetRequiredService<MetricsCollector>().CreateHistogram(metric, ["k"]);
            for (int i = 0; i < values.Length; i++)
            {
                Assert.Equal(RejectReason.None, h.RecordAt(t0 + (i * 100), values[i], "x"));
            }

            Task stop = a.StopAsync();
            Assert.True(await Task.WhenAny(stop, Task.Delay(TimeSpan.FromSeconds(40))) == stop, "the host's stop hung with a sink that throws on completion");
            await Record.ExceptionAsync(() => stop);
            ArrowFileStore store = a.Services.GetRequiredService<ArrowFileStore>();
            Assert.True(store.PublishedFiles().Count >= 1 && store.PendingRecoveries == 0,
                $"the store published {store.PublishedFiles().Count} files ({store.PendingRecoveries} pending, partial files: {Directory.GetFiles(folder.Path, "*" + ArrowFileStore.PartialExtension).Length})");
            AssertEveryPointAccountedForEverySink(a.Services.GetRequiredService<MetricsPipeline>().GetMetrics());
        }

        using IHost b = BuildHost(StoreSettings(folder.Path), TimeSpan.FromSeconds(30));
        await b.StartAsync().WaitAsync(TimeSpan.FromSeconds(20));
        AssertExact(b.Services.GetRequiredService<MetricStatisticsService>().GetMatching(metric, LabelSet.Empty, TimeSpan.FromHours(1)), Expected(values), "read back by the next host");
        Assert.Equal(0, b.Services.GetRequiredService<ArrowFileStore>().FilesSetAside);
        await b.StopAsync().WaitAsync(TimeSpan.FromSeconds(40));
    }

    // ---------------------------------------------------------------- 1b. one stop, and stops racing writers

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task PipelineStop_ThreeConcurrentAndOneLaterCall_SinkIgnoringItsToken_AllEndAsTheStopEnded(bool forcedBySignal)
    {
        // README, "Stopping": bounded by ShutdownTimeout ("past it, TimeoutException"); "Cancelling the token passed to
        // StopAsync is the second stop signal: it stops at once (OperationCanceledException)"; "There is one stop: a
        // concurrent or later StopAsync ends as it ended"; each window a sink did not get is counted abandoned.
        var sink = new HangingSink(hangOnComplete: true);
        var pipeline = new MetricsPipeline(new MetricsPipelineOptions
        {
            ShardCount = 1,
            WindowSize = TimeSpan.FromSeconds(1),
            AllowedLateness = TimeSpan.Zero,
            ShutdownTimeout = forcedBySignal ? TimeSpan.FromMinutes(5) : TimeSpan.FromSeconds(1),
            Instance = "p13-stop",
        }, [sink], new SinkOptions { AttemptTimeout = Timeout.InfiniteTimeSpan });
        try
        {
            pipeline.Start();
            using var collector = new MetricsCollector(pipeline, "p13-stop");
            MetricHistogram h = collector.CreateHistogram("probe13_stop_seconds", ["k"]);
            long t0 = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() - 30_000;
            for (int i = 0; i < 3_000; i++)
            {
                Assert.Equal(RejectReason.None, h.RecordAt(t0 + (i * 5), i % 10, "v"));
            }

            collector.Flush();
            await sink.FirstCall.WaitAsync(TimeSpan.FromSeconds(30));

            using var signal = new CancellationTokenSource();
            Task first = pipeline.StopAsync(signal.Token);
            Task second = Task.Run(() => pipeline.StopAsync());
            Task third = Task.Run(() => pipeline.StopAsync(CancellationToken.None));
            if (forcedBySignal)
            {
                signal.CancelAfter(TimeSpan.FromMilliseconds(300));
            }

            Task all = Task.WhenAll(first, second, third);
            Assert.True(await Task.WhenAny(all, Task.Delay(TimeSpan.FromSeconds(40))) == all, "three StopAsync calls did not all end within 40 s: " + Describe(pipeline.GetMetrics()));
            Type expected = forcedBySignal ? typeof(OperationCanceledException) : typeof(TimeoutException);
            foreach ((string name, Task stop) in new[] { ("first", first), ("second", second), ("third", third) })
            {
                Exception? e = await Record.ExceptionAsync(() => stop);
                Assert.True(e is not null && expected.IsInstanceOfType(e), $"the {name} StopAsync ended with {e?.GetType().Name ?? "success"}, expected {expected.Name}");
            }

            Exception? later = await Record.ExceptionAsync(() => pipeline.StopAsync().WaitAsync(TimeSpan.FromSeconds(20)));
            Assert.True(later is not null && expected.IsInstanceOfType(later), $"a later StopAsync ended with {later?.GetType().Name ?? "success"}, expected {expected.Name}");

            PipelineMetrics m = pipeline.GetMetrics();
            Assert.True(Sink(m, sink.Name).BatchesAbandoned >= 1, Describe(m));
            Assert.Equal(RejectReason.WriterClosed, h.RecordAt(t0, 1, "v"));
            AssertEveryPointAccountedForEverySink(pipeline.GetMetrics());
        }
        finally
        {
            await pipeline.DisposeAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(30));
        }
    }

    [Fact]
    public async Task HostStop_RacingThreeWriterThreadsAndTwoDirectHostedServiceStops_NoThrowNoHang_EveryCallAccounted()
    {
        // sdk.md: "A call never throws. It returns RejectReason.None or why it was refused, and the refusal is counted ...
        // Each refusal is counted once, in one of the two"; README: writes after StopAsync are WriterClosed; offered =
        // accepted + rejected + dropped. The host's stop races the application's own StopAsync calls of the hosted service.
        using IHost host = BuildHost(Settings(("Pipeline:AllowedLateness", "00:00:05")), TimeSpan.FromSeconds(30));
        await host.StartAsync().WaitAsync(TimeSpan.FromSeconds(20));
        MetricsPipeline pipeline = host.Services.GetRequiredService<MetricsPipeline>();
        using var collector = new MetricsCollector(pipeline, "p13-race");
        MetricHistogram h = collector.CreateHistogram("probe13_race_seconds", ["thread", "n"]);
        string[] values = [.. Enumerable.Range(0, 16).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture))];
        long taken = 0, closed = 0, other = 0;
        var errors = new ConcurrentQueue<Exception>();
        using var go = new ManualResetEventSlim();
        var threads = Enumerable.Range(0, 3).Select(t => new Thread(() =>
        {
            string name = "t" + t;
            go.Wait();
            for (int i = 0; i < 2_000_000; i++)
            {
                try
                {
                    RejectReason r = h.Record(i % 7, name, values[i % 16]);
                    if (r == RejectReason.None)
                    {
                        Interlocked.Increment(ref taken);
                    }
                    else if (r == RejectReason.WriterClosed)
                    {
                        if (Interlocked.Increment(ref closed) > 1_000)
                        {
                            return;
                        }
                    }
                    else
                    {
                        Interlocked.Increment(ref other);
                    }
                }
                catch (Exception e) when (e is not OutOfMemoryException)
                {
                    errors.Enqueue(e);
                    return;
                }
            }
        }) { IsBackground = true }).ToList();
        threads.ForEach(t => t.Start());
        go.Set();
        await Eventually.TrueAsync(() => Interlocked.Read(ref taken) > 20_000, "the writers took 20,000 points", TimeSpan.FromSeconds(30));
        MonitoringStreamHostedService service = host.Services.GetServices<IHostedService>().OfType<MonitoringStreamHostedService>().Single();
        Task[] stops = [host.StopAsync(), Task.Run(() => service.StopAsync(CancellationToken.None)), Task.Run(() => service.StopAsync(CancellationToken.None))];
        Task allStops = Task.WhenAll(stops);
        Assert.True(await Task.WhenAny(allStops, Task.Delay(TimeSpan.FromSeconds(40))) == allStops, "the host's stop and two direct stops did not end within 40 s");
        foreach (Task stop in stops)
        {
            Exception? e = await Record.ExceptionAsync(() => stop);
            Assert.True(e is null, $"a stop failed: {e}");
        }

        foreach (Thread t in threads)
        {
            Assert.True(t.Join(TimeSpan.FromSeconds(60)), "a writer thread did not finish within 60 s of the stop");
        }

        Assert.Empty(errors);
        Assert.Equal(0, Interlocked.Read(ref other));
        PipelineMetrics m = pipeline.GetMetrics();
        SourceMetrics source = m.Sources.Single(s => s.Source == "p13-race");
        AssertEveryPointAccountedForEverySink(m);
        Assert.True(source.Offered == source.Accepted + source.Rejected + source.Dropped, $"source: {source}");
        Assert.True(taken == source.Offered - source.Rejected, $"{taken} calls returned None; source: {source}");
        Assert.True(closed == source.Rejected + collector.Rejected, $"{closed} calls returned WriterClosed; engine counted {source.Rejected}, collector {collector.Rejected}");
        MetricStatistics? stats = host.Services.GetRequiredService<MetricStatisticsService>().GetMatching("probe13_race_seconds", LabelSet.Empty, TimeSpan.FromMinutes(10));
        Assert.True(stats?.Count == source.Accepted - source.Late, $"the index holds {stats?.Count}; source: {source}");
    }

    // ---------------------------------------------------------------- 4. statistics across a restart on one store folder

    private static (long Count, double Sum, double Min, double Max) Expected(IEnumerable<double> values)
    {
        double[] v = [.. values];
        return (v.Length, v.Sum(), v.Min(), v.Max());
    }

    private static void AssertExact(MetricStatistics? s, (long Count, double Sum, double Min, double Max) e, string what)
    {
        Assert.True(s is not null, $"{what}: no answer, expected count {e.Count}");
        Assert.True(s.Count == e.Count && s.Sum == e.Sum && s.Min == e.Min && s.Max == e.Max,
            $"{what}: count {s.Count} sum {s.Sum} min {s.Min} max {s.Max}, expected count {e.Count} sum {e.Sum} min {e.Min} max {e.Max}");
    }

    private static Dictionary<string, string?> StoreSettings(string directory) => Settings(
        ("ArrowStoreEnabled", "true"),
        ("ArrowStore:Directory", directory),
        ("Pipeline:AllowedLateness", "00:20:00"),
        ("RecentWindows:Retention", "01:00:00"));

    [Fact]
    public async Task Queries_AcrossARestartOnTheSameStoreWithDamagedFilesDroppedIn_StartSetsThemAsideAndAnswersStayExact()
    {
        // sdk.md, "Statistics queries": older windows come from the store's files, "No window is counted twice" (memory
        // answers windows after its boundary, "so windows of an earlier run come from the files"); count, sum, min and max
        // exact. arrow-schema.md: a damaged *.arrow file is set aside into damaged/ when the store opens (FilesSetAside).
        using var folder = new TempDirectory();
        string metric = "probe13_store_seconds";
        long t0 = ((DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() - 600_000) / 1000) * 1000;
        var runA = Enumerable.Range(0, 300).Select(i => (Key: "abc"[i % 3].ToString(), Value: (double)((i * 37) % 101) + 1, At: t0 + (i * 100))).ToList();
        var runB = Enumerable.Range(0, 200).Select(i => (Key: "abd"[i % 3].ToString(), Value: (double)((i * 53) % 211) - 50, At: t0 + 60_000 + (i * 150))).ToList();

        using (IHost a = BuildHost(StoreSettings(folder.Path), TimeSpan.FromSeconds(30)))
        {
            await a.StartAsync().WaitAsync(TimeSpan.FromSeconds(20));
            MetricHistogram h = a.Services.GetRequiredService<MetricsCollector>().CreateHistogram(metric, ["k"]);
            foreach (var p in runA)
            {
                Assert.Equal(RejectReason.None, h.RecordAt(p.At, p.Value, p.Key));
            }

            await a.StopAsync().WaitAsync(TimeSpan.FromSeconds(40));
            ArrowFileStore storeA = a.Services.GetRequiredService<ArrowFileStore>();
            Assert.True(storeA.PublishedFiles().Count >= 1 && storeA.PendingRecoveries == 0 && storeA.WriteErrors == 0, $"run A's store: {storeA.PublishedFiles().Count} files, {storeA.PendingRecoveries} pending, last error {storeA.LastError}");
            AssertExact(a.Services.GetRequiredService<MetricStatisticsService>().GetMatching(metric, LabelSet.Empty, TimeSpan.FromHours(1)), Expected(runA.Select(p => p.Value)), "run A, in its own memory");
        }

        string[] published = Directory.GetFiles(folder.Path, "*" + ArrowFileStore.Extension);
        byte[] real = File.ReadAllBytes(published[0]);
        var random = new Random(13);
        byte[] garbage = new byte[4096];
        random.NextBytes(garbage);
        string[] damaged = ["windows-20000101T000000Z-1-1.arrow", "windows-20000101T000000Z-1-2.arrow", "windows-20000101T000000Z-1-3.arrow", "windows-20000101T000000Z-1-4.arrow"];
        File.WriteAllBytes(Path.Combine(folder.Path, damaged[0]), garbage);                      // not an Arrow file
        File.WriteAllBytes(Path.Combine(folder.Path, damaged[1]), real[..(real.Length / 2)]);    // cut short: a copy of run A's data
        File.WriteAllBytes(Path.Combine(folder.Path, damaged[2]), []);                           // empty
        File.WriteAllBytes(Path.Combine(folder.Path, damaged[3]), real[..(real.Length - 3)]);    // footer's last bytes missing

        using (IHost b = BuildHost(StoreSettings(folder.Path), TimeSpan.FromSeconds(30)))
        {
            await b.StartAsync().WaitAsync(TimeSpan.FromSeconds(20));
            ArrowFileStore storeB = b.Services.GetRequiredService<ArrowFileStore>();
            Assert.True(storeB.FilesSetAside == damaged.Length, $"set aside {storeB.FilesSetAside}: {string.Join("; ", storeB.SetAsideFiles)}");
            foreach (string name in damaged)
            {
                Assert.True(File.Exists(Path.Combine(storeB.DamagedDirectory, name)), $"{name} is not in damaged/");
            }

            MetricStatisticsService queries = b.Services.GetRequiredService<MetricStatisticsService>();
            AssertExact(queries.GetMatching(metric, LabelSet.Empty, TimeSpan.FromHours(1)), Expected(runA.Select(p => p.Value)), "run A after a restart, from the files");
            IReadOnlyList<GroupedStatistics> groups = queries.GetGrouped(metric, LabelSet.Empty, ["k"], DateTimeOffset.UtcNow.AddHours(-1), DateTimeOffset.UtcNow.AddMinutes(1));
            Assert.Equal(3, groups.Count);
            foreach (GroupedStatistics g in groups)
            {
                string key = g.Group.ToString() ?? "";
                string k = "abc".Select(c => c.ToString()).Single(c => key.Contains('"' + c + '"', StringComparison.Ordinal));
                AssertExact(g.Statistics, Expected(runA.Where(p => p.Key == k).Select(p => p.Value)), $"run A group k={k} after a restart");
            }

            // A damaged file that appears while the host runs (a copy gone wrong, a disk error): queries go on.
            File.WriteAllBytes(Path.Combine(folder.Path, "windows-20000101T000000Z-1-5.arrow"), garbage);
            File.WriteAllBytes(Path.Combine(folder.Path, "windows-20000101T000000Z-1-6.arrow"), real[..(real.Length / 2)]);
            MetricStatistics? withDamage = null;
            Exception? e = Record.Exception(() => withDamage = queries.GetMatching(metric, LabelSet.Empty, TimeSpan.FromHours(1)));
            Assert.True(e is null, $"a query with a damaged file in the store folder threw {e}");
            AssertExact(withDamage, Expected(runA.Select(p => p.Value)), "run A with damaged files dropped in while running");
            File.Delete(Path.Combine(folder.Path, "windows-20000101T000000Z-1-5.arrow"));
            File.Delete(Path.Combine(folder.Path, "windows-20000101T000000Z-1-6.arrow"));

            MetricHistogram h = b.Services.GetRequiredService<MetricsCollector>().CreateHistogram(metric, ["k"]);
            foreach (var p in runB)
            {
                Assert.Equal(RejectReason.None, h.RecordAt(p.At, p.Value, p.Key));
            }

            await b.StopAsync().WaitAsync(TimeSpan.FromSeconds(40));
            AssertExact(queries.GetMatching(metric, LabelSet.Empty, TimeSpan.FromHours(1)), Expected(runA.Concat(runB).Select(p => p.Value)), "runs A (files) and B (memory)");
            AssertExact(queries.GetMatching(metric, LabelSet.Create(new Label("k", "a")), TimeSpan.FromHours(1)),
                Expected(runA.Concat(runB).Where(p => p.Key == "a").Select(p => p.Value)), "k=a over both runs");
        }

        using (IHost c = BuildHost(StoreSettings(folder.Path), TimeSpan.FromSeconds(30)))
        {
            await c.StartAsync().WaitAsync(TimeSpan.FromSeconds(20));
            MetricStatisticsService queries = c.Services.GetRequiredService<MetricStatisticsService>();
            AssertExact(queries.GetMatching(metric, LabelSet.Empty, TimeSpan.FromHours(1)), Expected(runA.Concat(runB).Select(p => p.Value)), "runs A and B, both from the files");
            AssertExact(queries.GetMatching(metric, LabelSet.Empty, DateTimeOffset.FromUnixTimeMilliseconds(t0 + 60_000), DateTimeOffset.FromUnixTimeMilliseconds(t0 + 90_000)),
                Expected(runB.Select(p => p.Value)), "run B's span only");
            AssertExact(queries.GetStatistics(metric, LabelSet.Create(new Label("k", "d")), TimeSpan.FromHours(1)),
                Expected(runB.Where(p => p.Key == "d").Select(p => p.Value)), "k=d (run B only)");
            await c.StopAsync().WaitAsync(TimeSpan.FromSeconds(40));
        }
    }

    [Fact]
    public async Task Queries_StoreFolderCopiedWhileItsFileIsStillPartial_AHostOnTheCopyRecoversItAndAnswersExactly()
    {
        // arrow-schema.md: "Acknowledged means on disk ... After a crash, a partial file therefore holds every acknowledged
        // batch whole"; "A partial file is recovered, not deleted" when the store opens (PartialFilesRecovered). A copy of the
        // folder taken while the host runs is what a crash leaves.
        using var folder = new TempDirectory();
        using var copy = new TempDirectory();
        string metric = "probe13_crash_seconds";
        long t0 = ((DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() - 120_000) / 1000) * 1000;
        double[] values = [.. Enumerable.Range(0, 500).Select(i => (double)((i * 29) % 113) / 4)];
        Dictionary<string, string?> settings = StoreSettings(folder.Path);
        settings["MonitoringStream:Pipeline:AllowedLateness"] = "00:00:00";
        using (IHost a = BuildHost(settings, TimeSpan.FromSeconds(30)))
        {
            await a.StartAsync().WaitAsync(TimeSpan.FromSeconds(20));
            MetricsCollector collector = a.Services.GetRequiredService<MetricsCollector>();
            MetricHistogram h = collector.CreateHistogram(metric, ["k"]);
            for (int i = 0; i < values.Length; i++)
            {
                Assert.Equal(RejectReason.None, h.RecordAt(t0 + (i * 20), values[i], "y"));
            }

            Assert.Equal(RejectReason.None, h.RecordAt(t0 + 30_000, 0, "closer"));   // closes every window of the values (no lateness)
            collector.Flush();
            MetricStatisticsService queries = a.Services.GetRequiredService<MetricStatisticsService>();
            ArrowFileStore store = a.Services.GetRequiredService<ArrowFileStore>();
            await Eventually.TrueAsync(() => queries.GetStatistics(metric, LabelSet.Create(new Label("k", "y")), TimeSpan.FromHours(1))?.Count == values.Length,
                "every value's window emitted to the index", TimeSpan.FromSeconds(30));
            await Eventually.TrueAsync(() => Sink(collector.Pipeline.GetMetrics(), store.Name).BatchesWritten >= Sink(collector.Pipeline.GetMetrics(), "recent-window-index").BatchesWritten,
                "the store acknowledged what the index holds", TimeSpan.FromSeconds(30));
            Assert.True(Directory.GetFiles(folder.Path, "*" + ArrowFileStore.PartialExtension).Length >= 1, "no partial file while the host runs (one-minute files)");
            foreach (string file in Directory.GetFiles(folder.Path))
            {
                File.Copy(file, Path.Combine(copy.Path, Path.GetFileName(file)));
            }

            await a.StopAsync().WaitAsync(TimeSpan.FromSeconds(40));
        }

        using IHost b = BuildHost(StoreSettings(copy.Path), TimeSpan.FromSeconds(30));
        await b.StartAsync().WaitAsync(TimeSpan.FromSeconds(20));
        ArrowFileStore recovered = b.Services.GetRequiredService<ArrowFileStore>();
        Assert.True(recovered.PartialFilesRecovered >= 1 && recovered.PendingRecoveries == 0 && recovered.FilesSetAside == 0,
            $"recovered {recovered.PartialFilesRecovered}, pending {recovered.PendingRecoveries}, set aside {recovered.FilesSetAside}, last error {recovered.LastError}");
        AssertExact(b.Services.GetRequiredService<MetricStatisticsService>().GetStatistics(metric, LabelSet.Create(new Label("k", "y")), TimeSpan.FromHours(1)),
            Expected(values), "the acknowledged windows of the crashed run");
        await b.StopAsync().WaitAsync(TimeSpan.FromSeconds(40));
    }

    /// <summary>A host of its own on <paramref name="settings"/> records <paramref name="points"/> under k=<paramref name="k"/>, then stops.</summary>
    private static async Task RecordInARunOfItsOwnAsync(Dictionary<string, string?> settings, string metric, string k, IEnumerable<(double Value, long At)> points)
    {
        using IHost run = BuildHost(settings, TimeSpan.FromSeconds(30));
        await run.StartAsync().WaitAsync(TimeSpan.FromSeconds(20));
        MetricHistogram h = run.Services.GetRequiredService<MetricsCollector>().CreateHistogram(metric, ["k"]);
        foreach ((double value, long at) in points)
        {
            Assert.Equal(RejectReason.None, h.RecordAt(at, value, k));
        }

        await run.StopAsync().WaitAsync(TimeSpan.FromSeconds(40));
    }

    [Fact]
    public async Task Queries_RestartInTheMiddleOfAWindow_TheWindowsTwoPartsFromFilesAndMemoryBothCounted()
    {
        // Every restart happens inside a window: run A emits the window's first part at its stop (to the files), run B
        // aggregates its second part (in memory). sdk.md: memory answers windows after its boundary ("the start of the first
        // window it received — so windows of an earlier run come from the files"); count, sum, min, max exact; docs/memory.md:
        // "two partial aggregates of the same series ... merge exactly, as re-emissions of a window do".
        using var folder = new TempDirectory();
        string metric = "probe13_midwindow";
        long t0 = ((DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() - 300_000) / 10_000) * 10_000;
        var runA = Enumerable.Range(0, 250).Select(i => (Value: (double)(i % 19), At: t0 + (i * 100))).ToList();            // [t0, t0 + 25 s)
        var runB = Enumerable.Range(0, 150).Select(i => (Value: (double)(1000 + (i % 11)), At: t0 + 25_000 + (i * 100))).ToList(); // [t0 + 25 s, t0 + 40 s)
        Dictionary<string, string?> settings = StoreSettings(folder.Path);
        settings["MonitoringStream:Pipeline:WindowSize"] = "00:00:10";
        settings["MonitoringStream:Pipeline:AllowedLateness"] = "00:00:00";
        await RecordInARunOfItsOwnAsync(settings, metric, "m", runA);

        using (IHost b = BuildHost(settings, TimeSpan.FromSeconds(30)))
        {
            await b.StartAsync().WaitAsync(TimeSpan.FromSeconds(20));
            MetricsCollector collector = b.Services.GetRequiredService<MetricsCollector>();
            MetricHistogram h = collector.CreateHistogram(metric, ["k"]);
            foreach (var p in runB)
            {
                Assert.Equal(RejectReason.None, h.RecordAt(p.At, p.Value, "m"));
            }

            Assert.Equal(RejectReason.None, h.RecordAt(t0 + 120_000, 0, "closer"));
            collector.Flush();
            MetricStatisticsService queries = b.Services.GetRequiredService<MetricStatisticsService>();
            await Eventually.TrueAsync(() => queries.GetStatistics(metric, LabelSet.Create(new Label("k", "m")), TimeSpan.FromHours(1)) is { Max: >= 1000 } s
                && s.Count >= runB.Count, "run B's windows emitted", TimeSpan.FromSeconds(30));
            await Task.Delay(500);
            AssertExact(queries.GetStatistics(metric, LabelSet.Create(new Label("k", "m")), TimeSpan.FromHours(1)),
                Expected(runA.Concat(runB).Select(p => p.Value)), "a window split by a restart, while run B runs");
            await b.StopAsync().WaitAsync(TimeSpan.FromSeconds(40));
        }

        using IHost c = BuildHost(settings, TimeSpan.FromSeconds(30));
        await c.StartAsync().WaitAsync(TimeSpan.FromSeconds(20));
        AssertExact(c.Services.GetRequiredService<MetricStatisticsService>().GetStatistics(metric, LabelSet.Create(new Label("k", "m")), TimeSpan.FromHours(1)),
            Expected(runA.Concat(runB).Select(p => p.Value)), "a window split by a restart, both parts from the files");
        await c.StopAsync().WaitAsync(TimeSpan.FromSeconds(40));
    }

    [Fact]
    public async Task Queries_NewRunsFirstWindowOlderThanTheEarlierRunsWindows_TheEarlierRunsWindowsStillCounted()
    {
        // A new run whose first point is older than what the previous run wrote (a client retrying a batch from before the
        // restart, a backfill within Pipeline:MaxPointAge). sdk.md: "windows of an earlier run come from the files"; "No
        // window is counted twice"; count, sum, min, max exact.
        using var folder = new TempDirectory();
        string metric = "probe13_backfill";
        long t0 = ((DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() - 600_000) / 1000) * 1000;
        var runA = Enumerable.Range(0, 300).Select(i => (Value: (double)(i % 13), At: t0 + 120_000 + (i * 100))).ToList();   // [t0 + 2 min, t0 + 2.5 min)
        (double Value, long At) backfill = (500, t0);
        Dictionary<string, string?> settings = StoreSettings(folder.Path);
        settings["MonitoringStream:Pipeline:AllowedLateness"] = "00:00:00";
        await RecordInARunOfItsOwnAsync(settings, metric, "b", runA);

        using (IHost b = BuildHost(settings, TimeSpan.FromSeconds(30)))
        {
            await b.StartAsync().WaitAsync(TimeSpan.FromSeconds(20));
            MetricStatisticsService queries = b.Services.GetRequiredService<MetricStatisticsService>();
            AssertExact(queries.GetStatistics(metric, LabelSet.Create(new Label("k", "b")), TimeSpan.FromHours(1)), Expected(runA.Select(p => p.Value)), "run A from the files");
            MetricsCollector collector = b.Services.GetRequiredService<MetricsCollector>();
            MetricHistogram h = collector.CreateHistogram(metric, ["k"]);
            Assert.Equal(RejectReason.None, h.RecordAt(backfill.At, backfill.Value, "b"));
            Assert.Equal(RejectReason.None, h.RecordAt(t0 + 300_000, 0, "closer"));
            collector.Flush();
            await Eventually.TrueAsync(() => b.Services.GetRequiredService<RecentWindowIndex>().Aggregates >= 1, "the backfilled window emitted", TimeSpan.FromSeconds(30));
            await Task.Delay(500);
            AssertExact(queries.GetStatistics(metric, LabelSet.Create(new Label("k", "b")), TimeSpan.FromHours(1)),
                Expected(runA.Select(p => p.Value).Append(backfill.Value)), "run A (files) and the new run's older point (memory)");
            await b.StopAsync().WaitAsync(TimeSpan.FromSeconds(40));
        }
    }

    [Fact]
    public async Task Queries_RestartWithAnotherWindowSizeOnTheSameStore_TotalsOverBothRunsStayExact()
    {
        // sdk.md: an answer merges "the aggregates of the windows that overlap the span"; count, sum, min and max exact. An
        // operator who changes Pipeline:WindowSize between runs leaves files of two window sizes in one folder.
        using var folder = new TempDirectory();
        string metric = "probe13_resize_seconds";
        long t0 = ((DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() - 600_000) / 60_000) * 60_000;
        double[] first = [.. Enumerable.Range(0, 240).Select(i => (double)(i % 31))];
        double[] second = [.. Enumerable.Range(0, 240).Select(i => (double)(100 + (i % 7)))];
        foreach ((string size, double[] values, long start) in new[] { ("00:00:01", first, t0), ("00:00:07", second, t0 + 120_000) })
        {
            Dictionary<string, string?> settings = StoreSettings(folder.Path);
            settings["MonitoringStream:Pipeline:WindowSize"] = size;
            using IHost host = BuildHost(settings, TimeSpan.FromSeconds(30));
            await host.StartAsync().WaitAsync(TimeSpan.FromSeconds(20));
            MetricHistogram h = host.Services.GetRequiredService<MetricsCollector>().CreateHistogram(metric, ["k"]);
            for (int i = 0; i < values.Length; i++)
            {
                Assert.Equal(RejectReason.None, h.RecordAt(start + (i * 250), values[i], "z"));
            }

            await host.StopAsync().WaitAsync(TimeSpan.FromSeconds(40));
        }

        using IHost reader = BuildHost(StoreSettings(folder.Path), TimeSpan.FromSeconds(30));
        await reader.StartAsync().WaitAsync(TimeSpan.FromSeconds(20));
        MetricStatisticsService queries = reader.Services.GetRequiredService<MetricStatisticsService>();
        AssertExact(queries.GetMatching(metric, LabelSet.Empty, TimeSpan.FromHours(1)), Expected(first.Concat(second)), "both runs");
        AssertExact(queries.GetMatching(metric, LabelSet.Empty, DateTimeOffset.FromUnixTimeMilliseconds(t0), DateTimeOffset.FromUnixTimeMilliseconds(t0 + 60_000)),
            Expected(first), "the first run's minute");
        AssertExact(queries.GetMatching(metric, LabelSet.Empty, DateTimeOffset.FromUnixTimeMilliseconds(t0 + 119_000), DateTimeOffset.FromUnixTimeMilliseconds(t0 + 240_000)),
            Expected(second), "the second run's span");
        await reader.StopAsync().WaitAsync(TimeSpan.FromSeconds(40));
    }

    [Fact]
    public async Task Start_GarbagePartialFilesAndAFolderNamedLikeAStoreFile_HostStartsAndQueriesStayExact()
    {
        // arrow-schema.md / operations.md: a partial file without a whole batch is deleted; "Opening meets a file it cannot
        // recover, check or move: counted in WriteErrors with the file in LastError; the store opens anyway". Neither kind is
        // read as data, and a folder whose name ends in .arrow is no file at all.
        using var folder = new TempDirectory();
        string metric = "probe13_garbage_seconds";
        long t0 = ((DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() - 300_000) / 1000) * 1000;
        double[] values = [.. Enumerable.Range(0, 120).Select(i => (double)(i % 23))];
        using (IHost a = BuildHost(StoreSettings(folder.Path), TimeSpan.FromSeconds(30)))
        {
            await a.StartAsync().WaitAsync(TimeSpan.FromSeconds(20));
            MetricHistogram h = a.Services.GetRequiredService<MetricsCollector>().CreateHistogram(metric, ["k"]);
            for (int i = 0; i < values.Length; i++)
            {
                Assert.Equal(RejectReason.None, h.RecordAt(t0 + (i * 100), values[i], "g"));
            }

            await a.StopAsync().WaitAsync(TimeSpan.FromSeconds(40));
        }

        var random = new Random(131);
        byte[] garbage = new byte[8192];
        random.NextBytes(garbage);
        File.WriteAllBytes(Path.Combine(folder.Path, "windows-20000101T000000Z-2-1.arrow.partial"), garbage);
        byte[] headerOnly = [(byte)'A', (byte)'R', (byte)'R', (byte)'O', (byte)'W', (byte)'1', 0, 0];
        File.WriteAllBytes(Path.Combine(folder.Path, "windows-20000101T000000Z-2-2.arrow.partial"), headerOnly);
        File.WriteAllBytes(Path.Combine(folder.Path, "windows-20000101T000000Z-2-3.arrow.partial"), []);
        Directory.CreateDirectory(Path.Combine(folder.Path, "windows-20000101T000000Z-2-4.arrow"));

        using IHost b = BuildHost(StoreSettings(folder.Path), TimeSpan.FromSeconds(30));
        Exception? start = await Record.ExceptionAsync(() => b.StartAsync().WaitAsync(TimeSpan.FromSeconds(20)));
        Assert.True(start is null, $"the host did not start beside garbage partial files and a folder named *.arrow: {start}");
        ArrowFileStore store = b.Services.GetRequiredService<ArrowFileStore>();
        MetricStatistics? answer = null;
        Exception? query = Record.Exception(() => answer = b.Services.GetRequiredService<MetricStatisticsService>().GetMatching(metric, LabelSet.Empty, TimeSpan.FromHours(1)));
        Assert.True(query is null, $"the query threw: {query}");
        AssertExact(answer, Expected(values), $"beside garbage (store: removed {store.PartialFilesRemoved}, pending {store.PendingRecoveries}, errors {store.WriteErrors}, last {store.LastError})");
        Assert.False(File.Exists(Path.Combine(folder.Path, "windows-20000101T000000Z-2-2.arrow.partial")), "a partial file holding no whole batch was not deleted");
        await b.StopAsync().WaitAsync(TimeSpan.FromSeconds(40));
    }

    [Fact]
    public async Task StoreFolderDeletedWhileTheHostRuns_QueriesAnswerFromMemory_FailuresCounted_StopEndsEveryPointAccounted()
    {
        // A temp cleaner or an operator removes the store folder under a running host. operations.md: a failed write or
        // publication throws, is counted, and the window is retried by the sink's policy; sdk.md: queries merge memory and
        // files. Nothing may crash, hang or go uncounted.
        using var root = new TempDirectory();
        string folder = Path.Combine(root.Path, "windows");
        string metric = "probe13_vanish_seconds";
        Dictionary<string, string?> settings = StoreSettings(folder);
        settings["MonitoringStream:Pipeline:AllowedLateness"] = "00:00:00";
        settings["MonitoringStream:Sinks:MaxAttempts"] = "2";
        settings["MonitoringStream:Sinks:InitialBackoff"] = "00:00:00.010";
        settings["MonitoringStream:Sinks:MaxBackoff"] = "00:00:00.020";
        using IHost host = BuildHost(settings, TimeSpan.FromSeconds(30));
        await host.StartAsync().WaitAsync(TimeSpan.FromSeconds(20));
        MetricsCollector collector = host.Services.GetRequiredService<MetricsCollector>();
        MetricsPipeline pipeline = collector.Pipeline;
        ArrowFileStore store = host.Services.GetRequiredService<ArrowFileStore>();
        MetricHistogram h = collector.CreateHistogram(metric, ["k"]);
        long written;
        using (var writing = new CancellationTokenSource())
        {
            Task<long> writer = WriteUntilAsync(h, writing.Token);
            await Eventually.TrueAsync(() => store.BatchesWritten >= 2, "the store wrote two windows", TimeSpan.FromSeconds(30));
            Directory.Delete(folder, recursive: true);
            long errorsBefore = Sink(pipeline.GetMetrics(), store.Name).Errors;
            await Eventually.TrueAsync(() => Sink(pipeline.GetMetrics(), store.Name).Errors > errorsBefore || store.WriteErrors > 0 || store.BatchesWritten >= 6,
                "the store failed a write, or went on writing, after its folder vanished", TimeSpan.FromSeconds(30));
            MetricStatistics? answer = null;
            Exception? query = Record.Exception(() => answer = host.Services.GetRequiredService<MetricStatisticsService>().GetMatching(metric, LabelSet.Empty, TimeSpan.FromHours(1)));
            Assert.True(query is null, $"a query after the store folder vanished threw {query}");
            Assert.True(answer is not null && answer.Count > 0, "no answer from memory");
            await writing.CancelAsync();
            written = await writer.WaitAsync(TimeSpan.FromSeconds(30));
        }

        Task stop = host.StopAsync();
        Assert.True(await Task.WhenAny(stop, Task.Delay(TimeSpan.FromSeconds(40))) == stop, "the host's stop hung after the store folder vanished: " + Describe(pipeline.GetMetrics()));
        await Record.ExceptionAsync(() => stop);
        PipelineMetrics m = pipeline.GetMetrics();
        AssertEveryPointAccountedForEverySink(m);
        MetricStatistics? mine = host.Services.GetRequiredService<MetricStatisticsService>().GetMatching(metric, LabelSet.Empty, TimeSpan.FromHours(1));
        long late = m.LateByMetric.GetValueOrDefault(metric);
        Assert.True(mine?.Count == written - late, $"{written} taken ({late} late), the index holds {mine?.Count}: " + Describe(m));
    }

    [Fact]
    public async Task HostStartFailsAfterTheEngineStarted_DisposeEndsAndNothingAcknowledgedIsLost_AfterwardsDashboardAndPublisherNeverThrow()
    {
        // Another hosted service fails to start after AddMonitoringStream's has: the application disposes the host without a
        // stop. operations.md: "Acknowledged means on disk", a partial file is recovered when the store next opens.
        using var folder = new TempDirectory();
        string metric = "probe13_failstart_seconds";
        Dictionary<string, string?> settings = StoreSettings(folder.Path);
        settings["MonitoringStream:Pipeline:AllowedLateness"] = "00:00:00";
        long t0 = ((DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() - 120_000) / 1000) * 1000;
        double[] values = [.. Enumerable.Range(0, 200).Select(i => (double)(i % 41))];
        IHost host = BuildHost(settings, TimeSpan.FromSeconds(10), s => s.AddHostedService<FailingStartService>());
        try
        {
            Exception? start = await Record.ExceptionAsync(() => host.StartAsync().WaitAsync(TimeSpan.FromSeconds(20)));
            Assert.True(start is not null && Flatten(start).Any(e => e.Message.Contains("probe13: the application failed", StringComparison.Ordinal)), $"start: {start}");
            MetricsCollector collector = host.Services.GetRequiredService<MetricsCollector>();
            MetricHistogram h = collector.CreateHistogram(metric, ["k"]);
            for (int i = 0; i < values.Length; i++)
            {
                Assert.Equal(RejectReason.None, h.RecordAt(t0 + (i * 100), values[i], "f"));
            }

            Assert.Equal(RejectReason.None, h.RecordAt(t0 + 60_000, 0, "closer"));
            collector.Flush();
            ArrowFileStore store = host.Services.GetRequiredService<ArrowFileStore>();
            MetricStatisticsService queries = host.Services.GetRequiredService<MetricStatisticsService>();
            await Eventually.TrueAsync(() => queries.GetStatistics(metric, LabelSet.Create(new Label("k", "f")), TimeSpan.FromHours(1))?.Count == values.Length,
                "the values' windows emitted", TimeSpan.FromSeconds(30));
            await Eventually.TrueAsync(() => Sink(collector.Pipeline.GetMetrics(), store.Name).BatchesWritten >= Sink(collector.Pipeline.GetMetrics(), "recent-window-index").BatchesWritten,
                "the store acknowledged them", TimeSpan.FromSeconds(30));
        }
        finally
        {
            Task dispose = Task.Run(host.Dispose);
            Assert.True(await Task.WhenAny(dispose, Task.Delay(TimeSpan.FromSeconds(60))) == dispose, "disposing a host whose start failed did not end within 60 s");
            Exception? disposed = await Record.ExceptionAsync(() => dispose);
            Assert.True(disposed is null, $"disposing the host threw {disposed}");
        }

        using IHost reader = BuildHost(StoreSettings(folder.Path), TimeSpan.FromSeconds(30));
        await reader.StartAsync().WaitAsync(TimeSpan.FromSeconds(20));
        AssertExact(reader.Services.GetRequiredService<MetricStatisticsService>().GetStatistics(metric, LabelSet.Create(new Label("k", "f")), TimeSpan.FromHours(1)),
            Expected(values), "the acknowledged windows after a failed start and a dispose");
        await reader.StopAsync().WaitAsync(TimeSpan.FromSeconds(40));

        // After the stop: the dashboard (a page still polling) and the publisher (the framework's loop) never throw.
        DashboardData after = await reader.Services.GetRequiredService<DashboardDataService>().GetAsync(TimeSpan.FromMinutes(5)).WaitAsync(TimeSpan.FromSeconds(30));
        Assert.NotNull(after.Health);
        HealthReport report = await reader.Services.GetRequiredService<HealthCheckService>().CheckHealthAsync().WaitAsync(TimeSpan.FromSeconds(30));
        Exception? publish = await Record.ExceptionAsync(() => reader.Services.GetRequiredService<HealthMetricsPublisher>().PublishAsync(report, CancellationToken.None));
        Assert.True(publish is null, $"publishing after the stop threw {publish}");
    }

    [Fact]
    public async Task Start_StoreDirectoryIsAFile_FailsAtStartWithAClearMessageNeverLater()
    {
        // operations.md: ArrowStore:Directory is "the store folder (created if missing)". A path that names a file cannot be
        // one: the host must refuse to start with a message naming the path, not start and fail on the first window.
        using var folder = new TempDirectory();
        string file = Path.Combine(folder.Path, "not-a-folder");
        File.WriteAllText(file, "x");
        using IHost host = BuildHost(Settings(("ArrowStoreEnabled", "true"), ("ArrowStore:Directory", file)), TimeSpan.FromSeconds(10));
        Exception? error = await Record.ExceptionAsync(() => host.StartAsync().WaitAsync(TimeSpan.FromSeconds(20)));
        if (error is null)
        {
            await host.StopAsync().WaitAsync(TimeSpan.FromSeconds(20));
        }

        Assert.True(error is not null, "the host started with a file as its store folder");
        Assert.False(error is NullReferenceException or TimeoutException, error.ToString());
        string messages = string.Join(" | ", Flatten(error).Select(e => $"{e.GetType().Name}: {e.Message}"));
        Assert.True(messages.Contains(file, StringComparison.Ordinal) || messages.Contains("ArrowStore:Directory", StringComparison.Ordinal), messages);
    }

    [Fact]
    public async Task Start_TwoBadSettingsAtOnce_BothNamed()
    {
        // configuration.md: "a bad value stops the service ... with ... one line per problem naming the setting".
        using IHost host = BuildHost(Settings(("Pipeline:ShardCount", "0"), ("Sinks:MaxAttempts", "0")), TimeSpan.FromSeconds(10));
        Exception? error = await Record.ExceptionAsync(() => host.StartAsync().WaitAsync(TimeSpan.FromSeconds(20)));
        Assert.NotNull(error);
        string messages = string.Join(" | ", Flatten(error).Select(e => e.Message));
        Assert.True(messages.Contains("MonitoringStream:Pipeline:ShardCount", StringComparison.Ordinal) && messages.Contains("MonitoringStream:Sinks:MaxAttempts", StringComparison.Ordinal), messages);
    }

    // ---------------------------------------------------------------- 5. the self-metrics Meter

    [Fact]
    public async Task SelfMetricsMeter_FromTheHostsMeterFactory_EveryDocumentedInstrument_TotalsMatchTheEngine_StalledSinkQueueShows()
    {
        // sdk.md, "Self-metrics through a Meter": the Meter "Monitoring.Stream" (created from the host's IMeterFactory)
        // publishes monitoring_stream.points.{offered,accepted,rejected,dropped,late}, monitoring_stream.windows.emitted,
        // monitoring_stream.series.active, monitoring_stream.shard.queue.fill, monitoring_stream.sink.queue.depth{sink} and
        // monitoring_stream.sink.state{sink}.
        var sink = new BlockingSink();
        using IHost host = BuildHost(Settings(("Sinks:AttemptTimeout", "-00:00:00.001")), TimeSpan.FromSeconds(30), s => s.AddSingleton<IWindowSink>(sink));
        await host.StartAsync().WaitAsync(TimeSpan.FromSeconds(20));
        EngineSelfMetrics self = host.Services.GetRequiredService<EngineSelfMetrics>();
        Assert.Equal("Monitoring.Stream", self.Meter.Name);
        Assert.Same(host.Services.GetRequiredService<IMeterFactory>(), self.Meter.Scope);
        MetricsCollector collector = host.Services.GetRequiredService<MetricsCollector>();
        MetricsPipeline pipeline = collector.Pipeline;

        var seen = new ConcurrentDictionary<string, double>();
        void OnMeasurement(Instrument instrument, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            string key = instrument.Name;
            foreach (KeyValuePair<string, object?> tag in tags)
            {
                key += $"{{{tag.Key}={tag.Value}}}";
            }

            seen[key] = value;
        }

        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (ReferenceEquals(instrument.Meter, self.Meter))
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((i, v, t, _) => OnMeasurement(i, v, t));
        listener.SetMeasurementEventCallback<int>((i, v, t, _) => OnMeasurement(i, v, t));
        listener.SetMeasurementEventCallback<double>((i, v, t, _) => OnMeasurement(i, v, t));
        listener.Start();

        MetricHistogram h = collector.CreateHistogram("probe13_meter_seconds", ["k"]);
        long t0 = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() - 20_000;
        for (int i = 0; i < 5_000; i++)
        {
            Assert.Equal(RejectReason.None, h.RecordAt(t0 + (i * 3), i % 13, "k" + (i % 5)));
        }

        collector.Flush();
        await sink.FirstWriteStarted.WaitAsync(TimeSpan.FromSeconds(30));
        await Eventually.TrueAsync(() => pipeline.GetMetrics().Accepted >= 5_000 && Sink(pipeline.GetMetrics(), sink.Name).QueueDepth >= 1,
            "5,000 points accepted and a window queued for the stalled sink", TimeSpan.FromSeconds(30));

        PipelineMetrics before = pipeline.GetMetrics();
        listener.RecordObservableInstruments();
        PipelineMetrics after = pipeline.GetMetrics();
        string[] names = ["monitoring_stream.points.offered", "monitoring_stream.points.accepted", "monitoring_stream.points.rejected",
            "monitoring_stream.points.dropped", "monitoring_stream.points.late", "monitoring_stream.windows.emitted", "monitoring_stream.series.active",
            "monitoring_stream.shard.queue.fill"];
        foreach (string name in names)
        {
            Assert.True(seen.ContainsKey(name), $"{name} was not measured; measured: {string.Join(", ", seen.Keys.Order(StringComparer.Ordinal))}");
        }

        Assert.InRange(seen["monitoring_stream.points.offered"], before.Offered, after.Offered);
        Assert.InRange(seen["monitoring_stream.points.accepted"], before.Accepted, after.Accepted);
        Assert.InRange(seen["monitoring_stream.windows.emitted"], before.WindowsEmitted, after.WindowsEmitted);
        foreach (SinkMetrics s in after.Sinks)
        {
            Assert.True(seen.ContainsKey($"monitoring_stream.sink.queue.depth{{sink={s.Name}}}"), $"no queue depth for sink {s.Name}; measured: {string.Join(", ", seen.Keys)}");
            Assert.True(seen.ContainsKey($"monitoring_stream.sink.state{{sink={s.Name}}}"), $"no state for sink {s.Name}; measured: {string.Join(", ", seen.Keys)}");
        }

        Assert.True(seen[$"monitoring_stream.sink.queue.depth{{sink={sink.Name}}}"] >= 1, "the stalled sink's queue depth through the Meter");
        sink.Release();
        await host.StopAsync().WaitAsync(TimeSpan.FromSeconds(40));
        AssertEveryPointAccountedForEverySink(pipeline.GetMetrics());

        // After the stop, and after the host is gone, a collection (dotnet-counters, an exporter's timer) never throws.
        Assert.Null(Record.Exception(listener.RecordObservableInstruments));
        host.Dispose();
        Assert.Null(Record.Exception(listener.RecordObservableInstruments));
    }
}
