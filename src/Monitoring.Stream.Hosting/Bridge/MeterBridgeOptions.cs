namespace Monitoring.Stream.Hosting.Bridge;

/// <summary>Which <c>System.Diagnostics.Metrics</c> meters feed the engine, and how often observable instruments are sampled.</summary>
public sealed class MeterBridgeOptions
{
    /// <summary>
    /// Meter names to listen to: an exact name (<c>Microsoft.AspNetCore.Hosting</c>), or a prefix ending in
    /// <c>*</c> (<c>MyCompany.*</c>). Empty: no meter is bridged.
    /// </summary>
    public IList<string> Meters { get; } = [];

    /// <summary>Interval at which observable instruments (gauges, observable counters) are read (default 10 s).</summary>
    public TimeSpan ObservableInterval { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Prefix put before every bridged metric name (default none).</summary>
    public string MetricPrefix { get; set; } = string.Empty;
}
