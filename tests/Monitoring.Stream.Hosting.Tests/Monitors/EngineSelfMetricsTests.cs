using System.Diagnostics.Metrics;
using Monitoring.Stream.Hosting.Monitors;
using Monitoring.Stream.Hosting.Tests.Support;

namespace Monitoring.Stream.Hosting.Tests.Monitors;

public class EngineSelfMetricsTests
{
    [Fact]
    public async Task Meter_ObservableCounters_ReportThePipelineTotals()
    {
        await using var engine = new EngineFixture(nowUnixMs: EngineFixture.T0 + 1_000);
        using var self = new EngineSelfMetrics(engine.Collector);
        var handle = engine.Collector.CreateHistogram("latency", ["route"]).Bind("/a");
        for (int i = 0; i < 5; i++)
        {
            handle.Record(i);
        }

        engine.Collector.Flush();
        var seen = new Dictionary<string, long>();
        using var listener = new MeterListener
        {
            InstrumentPublished = (instrument, l) =>
            {
                // Another test's engine may publish a meter of the same name: listen to this one only.
                if (ReferenceEquals(instrument.Meter, self.Meter) && instrument.Name.StartsWith("monitoring_stream.points.", StringComparison.Ordinal))
                {
                    l.EnableMeasurementEvents(instrument);
                }
            },
        };
        listener.SetMeasurementEventCallback<long>((instrument, value, tags, state) =>
        {
            seen[instrument.Name] = value;
        });
        listener.Start();
        listener.RecordObservableInstruments();

        Assert.Equal(EngineSelfMetrics.MeterName, self.Meter.Name);
        Assert.Equal(5, seen["monitoring_stream.points.offered"]);
        Assert.Equal(5, seen["monitoring_stream.points.accepted"]);
        Assert.Equal(0, seen["monitoring_stream.points.dropped"]);
    }
}
