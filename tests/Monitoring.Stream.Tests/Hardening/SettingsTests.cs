using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Sinks;
using Monitoring.Stream.Tests.Support;

namespace Monitoring.Stream.Tests.Hardening;

/// <summary>Settings fit a host: validated up front, snapshotted at construction, the pipeline's clock used everywhere, null refused at the door.</summary>
public class SettingsTests
{
    [Fact]
    public void Constructor_NullArguments_ArgumentNullException()
    {
        var options = new MetricsPipelineOptions { ShardCount = 1 };
        Assert.Throws<ArgumentNullException>(() => new MetricsPipeline(null!, Array.Empty<IWindowSink>()));
        Assert.Throws<ArgumentNullException>(() => new MetricsPipeline(options, (IEnumerable<IWindowSink>)null!));
        Assert.Throws<ArgumentNullException>(() => new MetricsPipeline(options, [(IWindowSink)null!]));
        Assert.Throws<ArgumentNullException>(() => new MetricsPipeline(options, [(SinkRegistration)null!]));
        Assert.Throws<ArgumentNullException>(() => new MetricsPipeline(options, [new SinkRegistration(null!)]));
    }

    [Fact]
    public async Task CreateWriter_BadArguments_Refused()
    {
        await using var pipeline = new MetricsPipeline(new MetricsPipelineOptions { ShardCount = 1 }, []);
        Assert.Throws<ArgumentNullException>(() => pipeline.CreateWriter(null!));
        Assert.Throws<ArgumentException>(() => pipeline.CreateWriter(" "));
        Assert.Throws<ArgumentOutOfRangeException>(() => pipeline.CreateWriter("w", (BackpressureMode)7));
        Assert.Throws<ArgumentNullException>(() => pipeline.CreateSharedWriter(null!));
        Assert.Throws<ArgumentOutOfRangeException>(() => pipeline.CreateSharedWriter("w", (BackpressureMode)7));
    }

    [Theory]
    [InlineData(nameof(MetricsPipelineOptions.ShardCount))]
    [InlineData(nameof(MetricsPipelineOptions.WindowSize))]
    [InlineData(nameof(MetricsPipelineOptions.AllowedLateness))]
    [InlineData(nameof(MetricsPipelineOptions.MaxPointAge))]
    [InlineData(nameof(MetricsPipelineOptions.SourceIdleTimeout))]
    [InlineData(nameof(MetricsPipelineOptions.ShutdownTimeout))]
    [InlineData(nameof(MetricsPipelineOptions.TickInterval))]
    public void Options_OutOfRange_RefusedNamingTheSetting(string setting)
    {
        var options = new MetricsPipelineOptions();
        switch (setting)
        {
            case nameof(MetricsPipelineOptions.ShardCount): options.ShardCount = 0; break;
            case nameof(MetricsPipelineOptions.WindowSize): options.WindowSize = TimeSpan.FromTicks(15_000); break;
            case nameof(MetricsPipelineOptions.AllowedLateness): options.AllowedLateness = TimeSpan.FromSeconds(-1); break;
            case nameof(MetricsPipelineOptions.MaxPointAge): options.MaxPointAge = TimeSpan.Zero; break;
            case nameof(MetricsPipelineOptions.SourceIdleTimeout): options.SourceIdleTimeout = TimeSpan.Zero; break;
            case nameof(MetricsPipelineOptions.ShutdownTimeout): options.ShutdownTimeout = TimeSpan.Zero; break;
            case nameof(MetricsPipelineOptions.TickInterval): options.TickInterval = TimeSpan.Zero; break;
        }

        ArgumentException e = Assert.ThrowsAny<ArgumentException>(options.Validate);
        Assert.Equal(setting, e.ParamName);
        ArgumentException e2 = Assert.ThrowsAny<ArgumentException>(() => new MetricsPipeline(options, []));
        Assert.Equal(setting, e2.ParamName);
    }

    [Fact]
    public void SinkOptions_OutOfRange_RefusedAtConstruction()
    {
        var options = new MetricsPipelineOptions { ShardCount = 1 };
        var sink = new ProbeSink("s");
        Assert.Throws<ArgumentOutOfRangeException>(() => new MetricsPipeline(options, [new SinkRegistration(sink, new SinkOptions { QueueCapacity = 0 })]));
        Assert.Throws<ArgumentOutOfRangeException>(() => new MetricsPipeline(options, [new SinkRegistration(sink, new SinkOptions { MaxAttempts = 0 })]));
        Assert.Throws<ArgumentOutOfRangeException>(() => new MetricsPipeline(options, [new SinkRegistration(sink, new SinkOptions { AttemptTimeout = TimeSpan.Zero })]));
        Assert.Throws<ArgumentOutOfRangeException>(() => new MetricsPipeline(options, [new SinkRegistration(sink, new SinkOptions { QueuePolicy = (SinkQueuePolicy)9 })]));
        Assert.Throws<ArgumentOutOfRangeException>(() => new MetricsPipeline(options, [new SinkRegistration(sink, new SinkOptions { InitialBackoff = TimeSpan.FromSeconds(2), MaxBackoff = TimeSpan.FromSeconds(1) })]));
    }

    [Fact]
    public async Task Options_ChangedAfterConstruction_RunningPipelineUnaffected_AndUntimedWritesUseItsClock()
    {
        var time = Scenario.Clock(Scenario.T0 + 100_250);
        var sink = new CollectingSink();
        MetricsPipelineOptions options = Scenario.Options(time);
        await using var pipeline = new MetricsPipeline(options, [sink]);
        // Too late: the pipeline took its snapshot.
        options.WindowSize = TimeSpan.FromSeconds(60);
        options.ShardCount = 4;
        options.TimeProvider = TimeProvider.System;
        SeriesId id = pipeline.Registry.GetOrAdd("a_total");
        pipeline.Start();
        using (PointWriter writer = pipeline.CreateWriter("w"))
        {
            Assert.Equal(RejectReason.None, writer.Write(id, 1));
            Assert.Equal(RejectReason.None, writer.Write("a_total", [], 2));
        }

        using (SharedPointWriter shared = pipeline.CreateSharedWriter("s"))
        {
            Assert.Equal(RejectReason.None, shared.Write(id, 3));
            Assert.Equal(RejectReason.None, shared.Write("a_total", [], 4));
        }

        await pipeline.StopAsync().Within("stop");
        PipelineMetrics m = pipeline.GetMetrics();
        Identities.AssertStopped(m);
        Assert.Single(m.Watermarks);
        WindowRow row = Assert.Single(sink.Rows);
        Assert.Equal(Scenario.T0 + 100_000, row.WindowStartMs);
        Assert.Equal(Scenario.T0 + 101_000, row.WindowEndMs);
        Assert.Equal(4, row.Count);
        Assert.Equal(10, row.Sum);
    }
}
