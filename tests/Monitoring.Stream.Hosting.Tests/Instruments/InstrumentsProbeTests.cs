using Monitoring.Stream.Hosting.Instruments;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;

namespace Monitoring.Stream.Hosting.Tests.Instruments;

/// <summary>
/// The SDK's instruments from docs/sdk.md alone, used as a careless application would: one bound handle shared by two
/// threads, values at and past the documented bounds, the collector disposed while threads still record.
/// </summary>
public class InstrumentsProbeTests
{
    private static MetricsPipeline NewPipeline() => new(new MetricsPipelineOptions { ShardCount = 2, Instance = "probe" }, []);

    [Fact]
    public async Task BoundHistogram_TwoThreadsOnOneHandle_EveryCallAcceptedAndEmittedOnce()
    {
        // "Thread-safe: instruments write through the engine's SharedPointWriter": a handle is shared freely.
        await using MetricsPipeline pipeline = NewPipeline();
        pipeline.Start();
        using var collector = new MetricsCollector(pipeline, "probe");
        BoundHistogram handle = collector.CreateHistogram("probe_shared_handle_seconds", ["route"]).Bind("/a");
        const int PerThread = 20_000;
        int refused = 0;
        using var start = new Barrier(2);
        Task[] threads = [.. Enumerable.Range(0, 2).Select(_ => Task.Factory.StartNew(() =>
        {
            start.SignalAndWait(TimeSpan.FromSeconds(10));
            for (int i = 0; i < PerThread; i++)
            {
                if (handle.Record(0.001 * (i % 100)) != RejectReason.None)
                {
                    Interlocked.Increment(ref refused);
                }
            }
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default))];
        await Task.WhenAll(threads).WaitAsync(TimeSpan.FromSeconds(20));
        await pipeline.StopAsync().WaitAsync(TimeSpan.FromSeconds(20));

        PipelineMetrics m = pipeline.GetMetrics();
        Assert.Equal(0, refused);
        Assert.Equal(2 * PerThread, m.Offered);
        Assert.Equal(2 * PerThread, m.Accepted);
        Assert.Equal(2 * PerThread, m.EmittedPoints + m.Late);
        Assert.Equal(0, m.Dropped);
    }

    [Theory]
    [InlineData(1e100, RejectReason.None)]
    [InlineData(-1e100, RejectReason.None)]
    [InlineData(double.Epsilon, RejectReason.None)]
    [InlineData(-0.0, RejectReason.None)]
    [InlineData(1.0000001e100, RejectReason.ValueOutOfRange)]
    [InlineData(double.MaxValue, RejectReason.ValueOutOfRange)]
    [InlineData(double.NegativeInfinity, RejectReason.Infinity)]
    [InlineData(double.NaN, RejectReason.NotANumber)]
    public async Task Histogram_ExtremeValue_AcceptedOrRefusedWithTheDocumentedReasonAndCounted(double value, RejectReason expected)
    {
        // README: "NaN, infinities and values beyond ±1e100 (ValueOutOfRange, so moments stay finite)".
        await using MetricsPipeline pipeline = NewPipeline();
        pipeline.Start();
        using var collector = new MetricsCollector(pipeline, "probe");
        MetricHistogram histogram = collector.CreateHistogram("probe_extreme", ["k"]);
        Assert.Equal(expected, histogram.Record(value, "v"));
        Assert.Equal(expected, histogram.Bind("v").Record(value));
        await pipeline.StopAsync().WaitAsync(TimeSpan.FromSeconds(20));
        PipelineMetrics m = pipeline.GetMetrics();
        long refusedHere = expected == RejectReason.None ? 0 : 2;
        // Counted once, by the engine (per source) or by the collector (docs/sdk.md), never lost.
        Assert.Equal(refusedHere, m.Rejected + (expected == RejectReason.None ? 0 : collector.GetRejectedCount(expected)));
        Assert.Equal(2 - refusedHere, m.EmittedPoints);
    }

    [Fact]
    public async Task Collector_DisposedWhileThreadsRecord_NoCallThrowsEveryPointAccounted()
    {
        await using MetricsPipeline pipeline = NewPipeline();
        pipeline.Start();
        var collector = new MetricsCollector(pipeline, "probe");
        MetricCounter counter = collector.CreateCounter("probe_dispose_race_total", ["k"]);
        BoundCounter bound = counter.Bind("b");
        long calls = 0, accepted = 0;
        Exception? thrown = null;
        using var running = new CountdownEvent(4);
        Task[] threads = [.. Enumerable.Range(0, 4).Select(t => Task.Factory.StartNew(() =>
        {
            try
            {
                running.Signal();
                for (int i = 0; i < 200_000; i++)
                {
                    RejectReason r = t % 2 == 0 ? counter.Add(1, "x") : bound.Add(1);
                    Interlocked.Increment(ref calls);
                    if (r == RejectReason.None)
                    {
                        Interlocked.Increment(ref accepted);
                    }
                    else
                    {
                        Assert.Equal(RejectReason.WriterClosed, r);
                    }
                }
            }
            catch (Exception e)
            {
                thrown ??= e;
            }
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default))];
        Assert.True(running.Wait(TimeSpan.FromSeconds(10)), "the recording threads did not start");
        collector.Dispose();
        collector.Dispose();
        await Task.WhenAll(threads).WaitAsync(TimeSpan.FromSeconds(30));
        await pipeline.StopAsync().WaitAsync(TimeSpan.FromSeconds(20));

        Assert.Null(thrown);
        PipelineMetrics m = pipeline.GetMetrics();
        Assert.Equal(calls, m.Offered);
        // The SDK's writer is DropNewest: a call that returned None was buffered, and its batch then reached a
        // shard (Accepted) or found the shard's queue full, or the pipeline stopping, and was dropped and counted.
        // Shards still running unoptimized code at the start make a full queue possible here.
        Assert.Equal(0, m.Pending);
        Assert.Equal(accepted, m.Accepted + m.Dropped);
        Assert.Equal(0, m.DroppedByReason.GetValueOrDefault(DropReason.ShardFault));
        Assert.Equal(calls - accepted, m.RejectedByReason.GetValueOrDefault(RejectReason.WriterClosed));
        Assert.Equal(m.Accepted, m.EmittedPoints + m.Late);
    }

    [Fact]
    public async Task Record_HostileLabelValues_NeverThrowsEachRefusalHasAReasonAndIsCounted()
    {
        // docs/sdk.md: "A call never throws. It returns RejectReason.None or why it was refused, and the refusal is counted."
        await using MetricsPipeline pipeline = NewPipeline();
        pipeline.Start();
        using var collector = new MetricsCollector(pipeline, "probe");
        MetricHistogram histogram = collector.CreateHistogram("probe_hostile_labels", ["a", "b"]);
        MetricGauge gauge = collector.CreateGauge("probe_hostile_gauge", ["a"]);
        MetricCounter counter = collector.CreateCounter("probe_hostile_total", ["a"]);
        string huge = new('x', 100_000);
        var calls = new List<(string What, Func<RejectReason> Call)>
        {
            ("a 100,000-character label value", () => histogram.Record(1, "x", huge)),
            ("too few label values", () => histogram.Record(1, "x")),
            ("too many label values", () => histogram.Record(1, "x", "y", "z")),
            ("no label values", () => histogram.Record(1)),
            ("long.MinValue timestamp", () => histogram.RecordAt(long.MinValue, 1, "x", "y")),
            ("long.MaxValue timestamp", () => histogram.RecordAt(long.MaxValue, 1, "x", "y")),
            ("a gauge at +infinity", () => gauge.Set(double.PositiveInfinity, "x")),
            ("a counter increment of +infinity", () => counter.Add(double.PositiveInfinity, "x")),
        };
        foreach ((string what, Func<RejectReason> call) in calls)
        {
            RejectReason reason = RejectReason.None;
            Exception? thrown = Record.Exception(() => reason = call());
            Assert.True(thrown is null, $"{what}: threw {thrown}");
            Assert.True(reason != RejectReason.None, $"{what}: accepted");
        }

        // A null label value is no error: like an empty value it means the label is absent (README, "Data model").
        Assert.Equal(histogram.Bind("x", string.Empty).Series, histogram.Bind("x", null!).Series);
        Assert.Equal(RejectReason.None, gauge.Set(1, [null!]));
        Assert.Equal(RejectReason.None, counter.Add(1, [null!]));

        await pipeline.StopAsync().WaitAsync(TimeSpan.FromSeconds(20));
        PipelineMetrics m = pipeline.GetMetrics();
        long byCollector = Enum.GetValues<RejectReason>().Where(r => r != RejectReason.None).Sum(collector.GetRejectedCount);
        Assert.Equal(calls.Count, m.Rejected + byCollector);
        Assert.Equal(2, m.Accepted);
    }
}
