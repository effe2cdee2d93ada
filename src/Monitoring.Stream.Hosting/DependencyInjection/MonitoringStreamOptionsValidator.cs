using Microsoft.Extensions.Options;

namespace Monitoring.Stream.Hosting.DependencyInjection;

/// <summary>Checks <see cref="MonitoringStreamOptions"/> at start-up; each failure names the setting as it is written in configuration.</summary>
internal sealed class MonitoringStreamOptionsValidator : IValidateOptions<MonitoringStreamOptions>
{
    private const string S = MonitoringStreamOptions.SectionName;

    public ValidateOptionsResult Validate(string? name, MonitoringStreamOptions options)
    {
        var failures = new List<string>();
        void Check(bool ok, string setting, object? value, string rule)
        {
            if (!ok)
            {
                failures.Add($"{S}:{setting} = {value ?? "(null)"}: {rule}");
            }
        }

        var p = options.Pipeline;
        Check(p.ShardCount is >= 1 and <= 1024, "Pipeline:ShardCount", p.ShardCount, "must be between 1 and 1024.");
        Check(p.WindowSize >= TimeSpan.FromMilliseconds(1) && p.WindowSize.Ticks % TimeSpan.TicksPerMillisecond == 0, "Pipeline:WindowSize", p.WindowSize, "must be a whole number of milliseconds, at least 1 ms.");
        Check(p.AllowedLateness >= TimeSpan.Zero, "Pipeline:AllowedLateness", p.AllowedLateness, "cannot be negative.");
        Check(p.BatchSize >= 1, "Pipeline:BatchSize", p.BatchSize, "must be at least 1.");
        Check(p.ShardQueueBatches >= 1, "Pipeline:ShardQueueBatches", p.ShardQueueBatches, "must be at least 1.");
        Check(p.ProducerFlushInterval > TimeSpan.Zero, "Pipeline:ProducerFlushInterval", p.ProducerFlushInterval, "must be positive.");
        Check(p.TickInterval > TimeSpan.Zero, "Pipeline:TickInterval", p.TickInterval, "must be positive.");
        Check(p.ShutdownTimeout > TimeSpan.Zero || p.ShutdownTimeout == Timeout.InfiniteTimeSpan, "Pipeline:ShutdownTimeout", p.ShutdownTimeout, "must be positive, or infinite.");
        Check(p.SketchRelativeAccuracy is >= 1e-5 and <= 0.5, "Pipeline:SketchRelativeAccuracy", p.SketchRelativeAccuracy, "must be between 0.00001 and 0.5.");
        Check(!string.IsNullOrWhiteSpace(p.Instance), "Pipeline:Instance", p.Instance, "must not be empty.");
        Check(options.Sinks.QueueCapacity >= 1, "Sinks:QueueCapacity", options.Sinks.QueueCapacity, "must be at least 1.");
        Check(options.Sinks.QueueCapacityBytes >= 1, "Sinks:QueueCapacityBytes", options.Sinks.QueueCapacityBytes, "must be at least 1.");
        Check(options.Sinks.MaxAttempts >= 1, "Sinks:MaxAttempts", options.Sinks.MaxAttempts, "must be at least 1.");
        if (options.ArrowStoreEnabled)
        {
            Check(!string.IsNullOrWhiteSpace(options.ArrowStore.Directory), "ArrowStore:Directory", options.ArrowStore.Directory, "must name a folder (or set ArrowStoreEnabled to false).");
            Check(options.ArrowStore.MaxFileBytes >= 1, "ArrowStore:MaxFileBytes", options.ArrowStore.MaxFileBytes, "must be at least 1.");
            // A window leaves memory only after the file holding it is published, or a query would miss it.
            Check(options.RecentWindows.Retention > options.ArrowStore.MaxFileAge + p.WindowSize + p.AllowedLateness, "RecentWindows:Retention", options.RecentWindows.Retention,
                $"must exceed ArrowStore:MaxFileAge + Pipeline:WindowSize + Pipeline:AllowedLateness ({options.ArrowStore.MaxFileAge + p.WindowSize + p.AllowedLateness}), so that a window leaves memory only once its file is published.");
        }

        Check(options.RecentWindows.Retention > TimeSpan.Zero, "RecentWindows:Retention", options.RecentWindows.Retention, "must be positive.");
        Check(options.RecentWindows.MaxAggregates >= 1, "RecentWindows:MaxAggregates", options.RecentWindows.MaxAggregates, "must be at least 1.");
        Check(options.Bridge.ObservableInterval > TimeSpan.Zero, "Bridge:ObservableInterval", options.Bridge.ObservableInterval, "must be positive.");
        Check(!options.SystemMetricsEnabled || options.SystemMetrics.Interval > TimeSpan.Zero, "SystemMetrics:Interval", options.SystemMetrics.Interval, "must be positive.");
        Check(options.SelfMetricsInterval > TimeSpan.Zero, "SelfMetricsInterval", options.SelfMetricsInterval, "must be positive.");
        Check(!string.IsNullOrWhiteSpace(options.Source), "Source", options.Source, "must not be empty.");
        try
        {
            options.Health.Validate();
        }
        catch (ArgumentOutOfRangeException e)
        {
            failures.Add($"{S}:Health: {e.Message}");
        }

        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }
}
