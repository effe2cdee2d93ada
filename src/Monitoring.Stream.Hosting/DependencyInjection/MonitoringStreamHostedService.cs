using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Monitoring.Stream.Hosting.Bridge;
using Monitoring.Stream.Hosting.Instruments;
using Monitoring.Stream.Hosting.Monitors;
using Monitoring.Stream.Pipeline;

namespace Monitoring.Stream.Hosting.DependencyInjection;

/// <summary>
/// Runs the engine with the host: starts the pipeline, the Meter bridge, the performance monitor and the
/// self-metrics; on shutdown stops them and stops the pipeline gracefully, within the host's shutdown
/// timeout (whose expiry is the second stop signal: what is left is abandoned and counted).
/// </summary>
public sealed partial class MonitoringStreamHostedService : IHostedService, IDisposable
{
    private readonly MetricsPipeline _pipeline;
    private readonly MetricsCollector _collector;
    private readonly EngineSelfMetrics _selfMetrics;
    private readonly MonitoringStreamOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger<MonitoringStreamHostedService> _logger;
    private MeterBridge? _bridge;
    private SystemMetricsSampler? _sampler;
    private ITimer? _selfTimer;

    /// <summary>Created by the container.</summary>
    public MonitoringStreamHostedService(MetricsPipeline pipeline, MetricsCollector collector, EngineSelfMetrics selfMetrics,
        IOptions<MonitoringStreamOptions> options, TimeProvider time, ILogger<MonitoringStreamHostedService> logger)
    {
        ArgumentNullException.ThrowIfNull(options);
        _pipeline = pipeline;
        _collector = collector;
        _selfMetrics = selfMetrics;
        _options = options.Value;
        _time = time;
        _logger = logger;
    }

    /// <inheritdoc />
    public Task StartAsync(CancellationToken cancellationToken)
    {
        _pipeline.Start();
        if (_options.Bridge.Meters.Count > 0)
        {
            _bridge = new MeterBridge(_collector, _options.Bridge, _time);
        }

        if (_options.SystemMetricsEnabled)
        {
            _sampler = new SystemMetricsSampler(_collector, _options.SystemMetrics, _time);
        }

        _selfTimer = _time.CreateTimer(static s => ((EngineSelfMetrics)s!).Record(), _selfMetrics, _options.SelfMetricsInterval, _options.SelfMetricsInterval);
        LogStarted(_pipeline.Options.ShardCount, _pipeline.Options.WindowSize, _options.Bridge.Meters, _options.SystemMetricsEnabled);
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    public async Task StopAsync(CancellationToken cancellationToken)
    {
        _bridge?.Dispose();
        _sampler?.Dispose();
        _selfTimer?.Dispose();
        _collector.Flush();
        try
        {
            await _pipeline.StopAsync(cancellationToken).ConfigureAwait(false);
            PipelineMetrics m = _pipeline.GetMetrics();
            LogStopped(m.Offered, m.Accepted, m.EmittedPoints, m.Late, m.Dropped);
        }
        catch (Exception e) when (e is OperationCanceledException or TimeoutException)
        {
            PipelineMetrics m = _pipeline.GetMetrics();
            LogForcedStop(e.Message, m.Sinks.Sum(s => s.BatchesAbandoned), m.Sinks.Sum(s => s.PointsAbandoned));
        }
    }

    /// <summary>Stops the timers.</summary>
    public void Dispose()
    {
        _bridge?.Dispose();
        _sampler?.Dispose();
        _selfTimer?.Dispose();
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Monitoring.Stream started: {Shards} shards, {WindowSize} windows, bridged meters [{Meters}], system metrics {SystemMetrics}.")]
    private partial void LogStarted(int shards, TimeSpan windowSize, IEnumerable<string> meters, bool systemMetrics);

    [LoggerMessage(Level = LogLevel.Information, Message = "Monitoring.Stream stopped gracefully: {Offered} points offered, {Accepted} accepted, {Emitted} emitted, {Late} late, {Dropped} dropped.")]
    private partial void LogStopped(long offered, long accepted, long emitted, long late, long dropped);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Monitoring.Stream stop was forced ({Reason}): {Batches} window batch(es) with {Points} point(s) abandoned across sinks.")]
    private partial void LogForcedStop(string reason, long batches, long points);
}
