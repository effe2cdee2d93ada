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

        // Every bound the engine's own options enforce is checked here too, by name, so that a bad value stops the
        // start with one line naming it instead of an exception thrown when the engine is built (or, for a timer
        // beyond its range, only when it first fires). Timeouts and intervals are capped at a day: timers refuse
        // due times beyond about 49.7 days.
        TimeSpan day = TimeSpan.FromDays(1);
        var p = options.Pipeline;
        Check(p.ShardCount is >= 1 and <= 1024, "Pipeline:ShardCount", p.ShardCount, "must be between 1 and 1024.");
        Check(p.WindowSize >= TimeSpan.FromMilliseconds(1) && p.WindowSize <= TimeSpan.FromDays(366) && p.WindowSize.Ticks % TimeSpan.TicksPerMillisecond == 0,
            "Pipeline:WindowSize", p.WindowSize, "must be a whole number of milliseconds, from 1 ms to 366 days.");
        Check(p.AllowedLateness >= TimeSpan.Zero && p.AllowedLateness <= TimeSpan.FromDays(366), "Pipeline:AllowedLateness", p.AllowedLateness, "must be from 0 to 366 days.");
        Check(p.BatchSize is >= 1 and <= 1 << 20, "Pipeline:BatchSize", p.BatchSize, "must be between 1 and 1048576.");
        Check(p.ShardQueueBatches >= 1, "Pipeline:ShardQueueBatches", p.ShardQueueBatches, "must be at least 1.");
        Check(p.ProducerFlushInterval >= TimeSpan.FromMilliseconds(1) && p.ProducerFlushInterval <= TimeSpan.FromHours(1), "Pipeline:ProducerFlushInterval", p.ProducerFlushInterval, "must be from 1 ms to 1 hour.");
        Check(p.TickInterval >= TimeSpan.FromMilliseconds(1) && p.TickInterval <= TimeSpan.FromHours(1), "Pipeline:TickInterval", p.TickInterval, "must be from 1 ms to 1 hour.");
        Check(p.MaxFutureSkew >= TimeSpan.Zero && p.MaxFutureSkew <= TimeSpan.FromDays(3650), "Pipeline:MaxFutureSkew", p.MaxFutureSkew, "must be from 0 to 3650 days.");
        Check(p.MaxPointAge >= TimeSpan.FromMilliseconds(1) && p.MaxPointAge <= TimeSpan.FromDays(3650), "Pipeline:MaxPointAge", p.MaxPointAge, "must be from 1 ms to 3650 days.");
        Check(p.SourceIdleTimeout >= TimeSpan.FromMilliseconds(1) && p.SourceIdleTimeout <= day, "Pipeline:SourceIdleTimeout", p.SourceIdleTimeout, "must be from 1 ms to 1 day.");
        Check(p.SeriesIdleTimeout == Timeout.InfiniteTimeSpan || (p.SeriesIdleTimeout >= TimeSpan.FromSeconds(1) && p.SeriesIdleTimeout <= TimeSpan.FromDays(366)),
            "Pipeline:SeriesIdleTimeout", p.SeriesIdleTimeout, "must be from 1 s to 366 days, or -00:00:00.001 (never reclaim).");
        Check(p.ShutdownTimeout == Timeout.InfiniteTimeSpan || (p.ShutdownTimeout > TimeSpan.Zero && p.ShutdownTimeout <= day),
            "Pipeline:ShutdownTimeout", p.ShutdownTimeout, "must be positive and at most 1 day, or -00:00:00.001 (wait for ever).");
        Check(p.SketchRelativeAccuracy is >= 1e-5 and <= 0.5, "Pipeline:SketchRelativeAccuracy", p.SketchRelativeAccuracy, "must be between 0.00001 and 0.5.");
        Check(p.SketchMaxBins is >= 16 and <= 1 << 20, "Pipeline:SketchMaxBins", p.SketchMaxBins, "must be between 16 and 1048576.");
        Check(!string.IsNullOrWhiteSpace(p.Instance), "Pipeline:Instance", p.Instance, "must not be empty.");
        var r = p.Registry;
        Check(r.MaxSeriesPerMetric >= 1, "Pipeline:Registry:MaxSeriesPerMetric", r.MaxSeriesPerMetric, "must be at least 1.");
        Check(r.MaxMetrics >= 1, "Pipeline:Registry:MaxMetrics", r.MaxMetrics, "must be at least 1.");
        Check(r.MaxLabelsPerSeries is >= 0 and <= 128, "Pipeline:Registry:MaxLabelsPerSeries", r.MaxLabelsPerSeries, "must be between 0 and 128.");
        Check(r.MaxNameLength >= 1, "Pipeline:Registry:MaxNameLength", r.MaxNameLength, "must be at least 1.");
        Check(r.MaxLabelValueLength >= 1, "Pipeline:Registry:MaxLabelValueLength", r.MaxLabelValueLength, "must be at least 1.");
        var k = options.Sinks;
        Check(k.QueueCapacity >= 1, "Sinks:QueueCapacity", k.QueueCapacity, "must be at least 1.");
        Check(k.QueueCapacityBytes >= 1, "Sinks:QueueCapacityBytes", k.QueueCapacityBytes, "must be at least 1.");
        Check(k.MaxAttempts >= 1, "Sinks:MaxAttempts", k.MaxAttempts, "must be at least 1.");
        Check(Enum.IsDefined(k.QueuePolicy), "Sinks:QueuePolicy", k.QueuePolicy, "must be Block or DropOldest.");
        Check(k.AttemptTimeout == Timeout.InfiniteTimeSpan || (k.AttemptTimeout > TimeSpan.Zero && k.AttemptTimeout <= day),
            "Sinks:AttemptTimeout", k.AttemptTimeout, "must be positive and at most 1 day, or -00:00:00.001 (wait for ever).");
        Check(k.InitialBackoff >= TimeSpan.Zero && k.InitialBackoff <= k.MaxBackoff, "Sinks:InitialBackoff", k.InitialBackoff, $"must be from 0 to Sinks:MaxBackoff ({k.MaxBackoff}).");
        Check(k.MaxBackoff <= day, "Sinks:MaxBackoff", k.MaxBackoff, "must be at most 1 day.");
        if (options.ArrowStoreEnabled)
        {
            Check(!string.IsNullOrWhiteSpace(options.ArrowStore.Directory), "ArrowStore:Directory", options.ArrowStore.Directory, "must name a folder (or set ArrowStoreEnabled to false).");
            Check(options.ArrowStore.MaxFileBytes >= 1, "ArrowStore:MaxFileBytes", options.ArrowStore.MaxFileBytes, "must be at least 1.");
            Check(options.ArrowStore.MaxFileAge > TimeSpan.Zero, "ArrowStore:MaxFileAge", options.ArrowStore.MaxFileAge, "must be positive.");
            Check(options.ArrowStore.Retention > TimeSpan.Zero, "ArrowStore:Retention", options.ArrowStore.Retention, "must be positive.");
            Check(options.ArrowStore.MaxTotalBytes >= 1, "ArrowStore:MaxTotalBytes", options.ArrowStore.MaxTotalBytes, "must be at least 1.");
            // A window leaves memory only after the file holding it is published, or a query would miss it.
            Check(options.RecentWindows.Retention > options.ArrowStore.MaxFileAge + p.WindowSize + p.AllowedLateness, "RecentWindows:Retention", options.RecentWindows.Retention,
                $"must exceed ArrowStore:MaxFileAge + Pipeline:WindowSize + Pipeline:AllowedLateness ({options.ArrowStore.MaxFileAge + p.WindowSize + p.AllowedLateness}), so that a window leaves memory only once its file is published.");
        }

        Check(options.RecentWindows.Retention > TimeSpan.Zero, "RecentWindows:Retention", options.RecentWindows.Retention, "must be positive.");
        Check(options.RecentWindows.MaxAggregates >= 1, "RecentWindows:MaxAggregates", options.RecentWindows.MaxAggregates, "must be at least 1.");
        Check(options.Bridge.ObservableInterval > TimeSpan.Zero && options.Bridge.ObservableInterval <= day, "Bridge:ObservableInterval", options.Bridge.ObservableInterval, "must be positive and at most 1 day.");
        Check(!options.SystemMetricsEnabled || (options.SystemMetrics.Interval > TimeSpan.Zero && options.SystemMetrics.Interval <= day), "SystemMetrics:Interval", options.SystemMetrics.Interval, "must be positive and at most 1 day.");
        Check(options.SelfMetricsInterval > TimeSpan.Zero && options.SelfMetricsInterval <= day, "SelfMetricsInterval", options.SelfMetricsInterval, "must be positive and at most 1 day.");
        Check(!string.IsNullOrWhiteSpace(options.Source), "Source", options.Source, "must not be empty.");
        if (failures.Count == 0)
        {
            // A safety net for a bound the engine adds later and this list lacks: still one line, never a stack trace.
            try
            {
                p.Validate();
                k.Validate();
            }
            catch (ArgumentException e)
            {
                failures.Add($"{S}: {e.Message.ReplaceLineEndings(" ")}");
            }
        }

        // Each health threshold by its own name, as configuration spells it (the engine check's own Validate names
        // only the pair). NaN passes no comparison, so it fails the range checks.
        var h = options.Health;
        void Fraction(double degraded, double unhealthy, string pair)
        {
            Check(degraded is >= 0 and <= 1, $"Health:{pair}Degraded", degraded, "must be a fraction in [0, 1].");
            Check(unhealthy is >= 0 and <= 1, $"Health:{pair}Unhealthy", unhealthy, "must be a fraction in [0, 1].");
            Check(!(degraded is >= 0 and <= 1 && unhealthy is >= 0 and <= 1) || degraded <= unhealthy,
                $"Health:{pair}Degraded", degraded, $"must be at most Health:{pair}Unhealthy ({unhealthy}).");
        }

        Fraction(h.ShardQueueFillDegraded, h.ShardQueueFillUnhealthy, "ShardQueueFill");
        Fraction(h.DropRateDegraded, h.DropRateUnhealthy, "DropRate");
        Fraction(h.LateRateDegraded, h.LateRateUnhealthy, "LateRate");
        Check(h.RateWindow > TimeSpan.Zero, "Health:RateWindow", h.RateWindow, "must be positive.");
        Check(h.SinkStalledDegradedAfter > TimeSpan.Zero, "Health:SinkStalledDegradedAfter", h.SinkStalledDegradedAfter, "must be positive.");
        Check(h.SinkStalledUnhealthyAfter > TimeSpan.Zero, "Health:SinkStalledUnhealthyAfter", h.SinkStalledUnhealthyAfter, "must be positive.");
        // One message for the pair's order, naming both settings: either may be the one set wrongly.
        Check(h.SinkStalledDegradedAfter <= TimeSpan.Zero || h.SinkStalledUnhealthyAfter >= h.SinkStalledDegradedAfter,
            "Health:SinkStalledDegradedAfter", h.SinkStalledDegradedAfter, $"must be at most {S}:Health:SinkStalledUnhealthyAfter ({h.SinkStalledUnhealthyAfter}).");

        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }
}
