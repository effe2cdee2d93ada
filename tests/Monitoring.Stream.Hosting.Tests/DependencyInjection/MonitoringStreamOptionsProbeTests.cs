using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Monitoring.Stream.Hosting.DependencyInjection;

namespace Monitoring.Stream.Hosting.Tests.DependencyInjection;

/// <summary>
/// Every bound the engine enforces on a setting is reported by the start-up validation, naming the setting as
/// configuration spells it (docs/configuration.md), instead of escaping as an exception when the engine is built
/// or, for a timer, when it first fires (a 100-day shutdown timeout used to throw from the stop and lose the open windows).
/// </summary>
public class MonitoringStreamOptionsProbeTests
{
    private static OptionsValidationException? Validate(string key, string value)
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?> { [key] = value }).Build();
        var services = new ServiceCollection();
        services.AddSingleton<IConfiguration>(configuration);
        services.AddMonitoringStream(o => o.ArrowStore.Directory = "unused");
        using ServiceProvider provider = services.BuildServiceProvider();
        try
        {
            _ = provider.GetRequiredService<IOptions<MonitoringStreamOptions>>().Value;
            return null;
        }
        catch (OptionsValidationException e)
        {
            return e;
        }
    }

    [Theory]
    [InlineData("Pipeline:MaxFutureSkew", "4000.00:00:00", "from 0 to 3650 days")]
    [InlineData("Pipeline:MaxPointAge", "4000.00:00:00", "from 1 ms to 3650 days")]
    [InlineData("Pipeline:TickInterval", "02:00:00", "from 1 ms to 1 hour")]
    [InlineData("Pipeline:ProducerFlushInterval", "02:00:00", "from 1 ms to 1 hour")]
    [InlineData("Pipeline:SourceIdleTimeout", "2.00:00:00", "from 1 ms to 1 day")]
    [InlineData("Pipeline:SeriesIdleTimeout", "00:00:00.5", "from 1 s to 366 days")]
    [InlineData("Pipeline:WindowSize", "400.00:00:00", "from 1 ms to 366 days")]
    [InlineData("Pipeline:AllowedLateness", "400.00:00:00", "from 0 to 366 days")]
    [InlineData("Pipeline:BatchSize", "2000000", "between 1 and 1048576")]
    [InlineData("Pipeline:ShutdownTimeout", "100.00:00:00", "at most 1 day")]
    [InlineData("Pipeline:SketchMaxBins", "8", "between 16 and 1048576")]
    [InlineData("Pipeline:Registry:MaxLabelsPerSeries", "200", "between 0 and 128")]
    [InlineData("Pipeline:Registry:MaxSeriesPerMetric", "0", "at least 1")]
    [InlineData("Pipeline:Registry:MaxMetrics", "0", "at least 1")]
    [InlineData("Pipeline:Registry:MaxNameLength", "0", "at least 1")]
    [InlineData("Pipeline:Registry:MaxLabelValueLength", "0", "at least 1")]
    [InlineData("Sinks:AttemptTimeout", "100.00:00:00", "at most 1 day")]
    [InlineData("Sinks:MaxBackoff", "100.00:00:00", "at most 1 day")]
    [InlineData("Sinks:InitialBackoff", "00:01:00", "from 0 to Sinks:MaxBackoff")]
    [InlineData("ArrowStore:MaxTotalBytes", "0", "at least 1")]
    [InlineData("ArrowStore:Retention", "00:00:00", "must be positive")]
    [InlineData("SystemMetrics:Interval", "100.00:00:00", "at most 1 day")]
    [InlineData("Bridge:ObservableInterval", "100.00:00:00", "at most 1 day")]
    [InlineData("SelfMetricsInterval", "100.00:00:00", "at most 1 day")]
    public void AddMonitoringStream_SettingBeyondTheEnginesBound_ValidationNamesIt(string setting, string value, string rule)
    {
        OptionsValidationException? e = Validate($"MonitoringStream:{setting}", value);
        Assert.NotNull(e);
        string line = Assert.Single(e.Failures, f => f.StartsWith($"MonitoringStream:{setting} = ", StringComparison.Ordinal));
        Assert.Contains(rule, line, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("Pipeline:MaxFutureSkew", "3650.00:00:00")]
    [InlineData("Pipeline:ShutdownTimeout", "1.00:00:00")]
    [InlineData("Pipeline:ShutdownTimeout", "-00:00:00.001")]
    [InlineData("Pipeline:SeriesIdleTimeout", "-00:00:00.001")]
    [InlineData("Sinks:AttemptTimeout", "-00:00:00.001")]
    [InlineData("Pipeline:Registry:MaxLabelsPerSeries", "128")]
    public void AddMonitoringStream_SettingAtTheDocumentedBound_Accepted(string setting, string value)
    {
        Assert.Null(Validate($"MonitoringStream:{setting}", value));
    }
}
