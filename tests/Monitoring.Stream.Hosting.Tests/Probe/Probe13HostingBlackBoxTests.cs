using System.Collections.Concurrent;
using System.Diagnostics;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Monitoring.Stream.Hosting.Dashboard;
using Monitoring.Stream.Hosting.DependencyInjection;
using Monitoring.Stream.Hosting.Health;
using Monitoring.Stream.Hosting.Instruments;
using Monitoring.Stream.Hosting.Queries;
using Monitoring.Stream.Hosting.Tests.Support;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Sinks;

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
        $"offered {m.Offered}, accepted {m.Accepted}, rejected {m.Rejected}, dropped {m.Dropped}, emitted {m.EmittedPoints}, late {m.Late}, " +
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

    private static async Task<HealthStatus> EngineStatusAsync(IHost host)
    {
        HealthReport report = await host.Services.GetRequiredService<HealthCheckService>()
            .CheckHealthAsync(r => r.Name == EngineCheck).WaitAsync(TimeSpan.FromSeconds(30));
        return report.Entries[EngineCheck].Status;
    }

    /// <summary>Polls the engine's check until it reports <paramref name="wanted"/>; returns every status seen, in order, without repeats.</summary>
    private static async Task<List<HealthStatus>> PollEngineHealthUntilAsync(IHost host, HealthStatus wanted, TimeSpan timeout, string what)
    {
        var seen = new List<HealthStatus>();
        DateTime deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            HealthStatus status = await EngineStatusAsync(host);
            if (seen.Count == 0 || seen[^1] != status)
            {
                seen.Add(status);
            }

            if (status == wanted)
            {
                return seen;
            }

            if (DateTime.UtcNow > deadline)
            {
                Assert.Fail($"{what}: the engine's check never became {wanted} within {timeout}; it went {string.Join(" -> ", seen)}");
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
    public async Task HostRun_SinkThatThrowsOnEveryCall_WindowsFailedAfterTheirAttempts_EngineUnhealthy_GracefulStopPrompt_QueriesExact()
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
            Assert.True(dashboard.Health?.Status is "Unhealthy" or "Degraded", $"dashboard health {dashboard.Health?.Status} while a sink gives up every window");
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

        MetricStatistics? engineHealth = queries.GetStatistics(HealthMetricsPublisher.StatusMetric, LabelSet.Create(new Label("check", EngineCheck)), TimeSpan.FromMinutes(10));
        Assert.True(engineHealth is not null && engineHealth.Min == 0, $"monitoring_health_status{{check=\"{EngineCheck}\"}} min {engineHealth?.Min}, expected 0 (unhealthy)");
        MetricStatistics? overall = queries.GetStatistics(HealthMetricsPublisher.StatusMetric, LabelSet.Create(new Label("check", "overall")), TimeSpan.FromMinutes(10));
        Assert.True(overall is not null && overall.Min == 0, $"monitoring_health_status{{check=\"overall\"}} min {overall?.Min}");
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

    // ---------------------------------------------------------------- 2. health of a stalled sink

    [Fact]
    public async Task Health_StalledSink_DegradedThenUnhealthyByTheConfiguredSpans_DashboardStillAnswers_HealthyOnceItWritesAgain()
    {
        // sdk.md, Health: "a sink stalled: windows pending, none written" is degraded from Health:SinkStalledDegradedAfter
        // and unhealthy from Health:SinkStalledUnhealthyAfter (here 1 s and 4 s); the dashboard "runs the health checks".
        var sink = new BlockingSink();
        using IHost host = BuildHost(Settings(("Sinks:AttemptTimeout", "-00:00:00.001"), ("Health:SinkStalledDegradedAfter", "00:00:01"),
            ("Health:SinkStalledUnhealthyAfter", "00:00:04")), TimeSpan.FromSeconds(60), s => s.AddSingleton<IWindowSink>(sink));
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
            List<HealthStatus> stalling = await PollEngineHealthUntilAsync(host, HealthStatus.Unhealthy, TimeSpan.FromSeconds(60), "sink stalled");
            Assert.True(stalling.Contains(HealthStatus.Degraded) && stalling.IndexOf(HealthStatus.Degraded) < stalling.IndexOf(HealthStatus.Unhealthy),
                $"a stalled sink should go degraded (1 s) before unhealthy (4 s); seen {string.Join(" -> ", stalling)}");

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
}
