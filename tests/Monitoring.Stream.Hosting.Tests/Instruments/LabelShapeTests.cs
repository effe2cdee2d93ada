using System.Globalization;
using Monitoring.Stream.Hosting.Instruments;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;

namespace Monitoring.Stream.Hosting.Tests.Instruments;

/// <summary>
/// A labelled call names the series its label values say, whatever the number of labels (the call stores up to four
/// at fixed positions of a local, more through a span, more than eight in a thread's scratch array) and whatever
/// the order of the label names (the engine keeps them in ordinal order).
/// </summary>
public class LabelShapeTests
{
    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(5)]
    [InlineData(8)]
    [InlineData(9)]
    [InlineData(12)]
    public async Task Record_AnyNumberOfLabelsNamedOutOfOrder_EachCallReachesTheSeriesOfItsValues(int labelCount)
    {
        await using var pipeline = new MetricsPipeline(new MetricsPipelineOptions { ShardCount = 2, Instance = "shapes" }, []);
        pipeline.Start();
        using var collector = new MetricsCollector(pipeline, "shapes");
        // Names in descending ordinal order, so the engine's order reverses them.
        string[] names = [.. Enumerable.Range(0, labelCount).Select(i => "l" + (char)('z' - i))];
        MetricHistogram histogram = collector.CreateHistogram("shape_seconds", names);
        const int Sets = 5;
        string[][] values = [.. Enumerable.Range(0, Sets).Select(s => Enumerable.Range(0, labelCount).Select(i => string.Create(CultureInfo.InvariantCulture, $"v{s}_{i}")).ToArray())];
        for (int round = 0; round < 3; round++)
        {
            foreach (string[] set in values)
            {
                Assert.Equal(RejectReason.None, histogram.Record(1.0, set));
            }
        }

        int expectedSeries = labelCount == 0 ? 1 : Sets;
        Assert.Equal(expectedSeries, pipeline.Registry.Count);
        foreach (string[] set in values)
        {
            // The series each set names, looked up by value with strings of its own: a call that had paired a
            // name with another label's value would have made a series this lookup does not find.
            Label[] expected = [.. names.Select((name, i) => new Label(new string(name.AsSpan()), new string(set[i].AsSpan())))];
            Assert.Equal(RejectReason.None, pipeline.Registry.TryGetOrAdd(new string("shape_seconds".AsSpan()), expected, out SeriesId id));
            Assert.Equal(id, histogram.Bind(set).Series);
        }

        Assert.Equal(expectedSeries, pipeline.Registry.Count);
        collector.Flush();
        await pipeline.StopAsync().WaitAsync(TimeSpan.FromSeconds(20));
        Assert.Equal(3L * Sets, pipeline.GetMetrics().EmittedPoints);
    }
}
