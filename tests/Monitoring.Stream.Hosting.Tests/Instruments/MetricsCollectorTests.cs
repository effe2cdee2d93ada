using Monitoring.Stream.Hosting.Instruments;
using Monitoring.Stream.Hosting.Queries;
using Monitoring.Stream.Hosting.Tests.Support;
using Monitoring.Stream.Model;

namespace Monitoring.Stream.Hosting.Tests.Instruments;

public class MetricsCollectorTests
{
    private const long T0 = EngineFixture.T0;

    [Theory]
    [InlineData("1bad")]
    [InlineData("has-dash")]
    [InlineData("")]
    public async Task CreateHistogram_InvalidName_ThrowsNamingIt(string name)
    {
        await using var engine = new EngineFixture();

        var e = Assert.Throws<MetricValidationException>(() => engine.Collector.CreateHistogram(name, ["route"]));

        Assert.Equal(RejectReason.InvalidMetricName, e.Reason);
        Assert.Contains($"'{name}'", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task CreateCounter_InvalidOrDuplicateLabelName_Throws()
    {
        await using var engine = new EngineFixture();

        Assert.Equal(RejectReason.InvalidLabelName, Assert.Throws<MetricValidationException>(() => engine.Collector.CreateCounter("c", ["__reserved"])).Reason);
        Assert.Equal(RejectReason.InvalidLabelName, Assert.Throws<MetricValidationException>(() => engine.Collector.CreateCounter("c", ["a.b"])).Reason);
        Assert.Equal(RejectReason.DuplicateLabelName, Assert.Throws<MetricValidationException>(() => engine.Collector.CreateCounter("c", ["a", "a"])).Reason);
    }

    [Fact]
    public async Task Create_SameNameOtherShape_ThrowsAndSameShapeReturnsSameInstrument()
    {
        await using var engine = new EngineFixture();
        MetricCounter counter = engine.Collector.CreateCounter("jobs_total", ["queue"]);

        Assert.Same(counter, engine.Collector.CreateCounter("jobs_total", ["queue"]));
        Assert.Throws<MetricValidationException>(() => engine.Collector.CreateGauge("jobs_total", ["queue"]));
        Assert.Throws<MetricValidationException>(() => engine.Collector.CreateCounter("jobs_total", ["queue", "host"]));
    }

    [Fact]
    public async Task BoundHandles_StampedAndTimestamped_AllocateNothingPerCall()
    {
        // The writer reads a handle's id through a generic over its binding (a struct, by reference): no boxing.
        await using var engine = new EngineFixture();
        BoundHistogram histogram = engine.Collector.CreateHistogram("bound_latency", ["route"]).Bind("/a");
        BoundCounter counter = engine.Collector.CreateCounter("bound_total", ["route"]).Bind("/a");
        BoundGauge gauge = engine.Collector.CreateGauge("bound_depth", ["route"]).Bind("/a");
        // Refusals are counted, not asserted per call (an assertion may allocate itself).
        int refused = 0;
        void Calls(int n)
        {
            for (int i = 0; i < n; i++)
            {
                refused += histogram.Record(i) == RejectReason.None ? 0 : 1;
                refused += histogram.Record(i, T0 + 1_000) == RejectReason.None ? 0 : 1;
                refused += counter.Add(1) == RejectReason.None ? 0 : 1;
                refused += counter.Add(1, T0 + 1_000) == RejectReason.None ? 0 : 1;
                refused += gauge.Set(i) == RejectReason.None ? 0 : 1;
                refused += gauge.Set(i, T0 + 1_000) == RejectReason.None ? 0 : 1;
            }
        }

        Calls(20);
        engine.Collector.Flush();
        await engine.Pipeline.DrainAsync();

        // After the await this may be another thread: its first calls (its writer) are not measured.
        Calls(10);
        long before = GC.GetAllocatedBytesForCurrentThread();
        Calls(100);
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
        engine.Collector.Flush();
        await engine.Pipeline.DrainAsync();
        Assert.Equal(0, refused);
        Assert.Equal(0, engine.Pipeline.GetMetrics().Rejected);
        Assert.Equal(6 * 130, engine.Pipeline.GetMetrics().Accepted);
    }

    [Theory]
    [InlineData(3)]
    [InlineData(8)]
    [InlineData(10)]
    public async Task Record_LabelsPerCall_ResolvesTheSeriesOfTheNamedLabelsAndAllocatesNothing(int labelCount)
    {
        // Labels per call are built on the stack (up to LabelBuffer.Length) or in the thread's scratch array
        // (more): either way in the registry's order of names, whatever order they were declared in.
        await using var engine = new EngineFixture();
        string[] names = [.. Enumerable.Range(0, labelCount).Select(i => "l" + (labelCount - i).ToString("D2", System.Globalization.CultureInfo.InvariantCulture))];
        string[][] values = [.. Enumerable.Range(0, 4).Select(s => Enumerable.Range(0, labelCount).Select(i => $"v{s}_{i}").ToArray())];
        MetricHistogram histogram = engine.Collector.CreateHistogram("wide", names);
        for (int round = 0; round < 5; round++)
        {
            for (int i = 0; i < 400; i++)
            {
                Assert.Equal(RejectReason.None, histogram.RecordAt(T0 + 1_000, 1, values[i & 3]));
            }

            engine.Collector.Flush();
            await engine.Pipeline.DrainAsync();
        }

        // After the awaits this may be another thread: its first calls (its writer, its scratch) are not measured.
        for (int i = 0; i < 100; i++)
        {
            histogram.RecordAt(T0 + 1_000, 1, values[i & 3]);
        }

        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 400; i++)
        {
            histogram.RecordAt(T0 + 1_000, 1, values[i & 3]);
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
        for (int s = 0; s < values.Length; s++)
        {
            SeriesId id = engine.Pipeline.Registry.GetOrAdd("wide", [.. names.Zip(values[s], (n, v) => new Label(n, v))]);
            Assert.Equal(
                names.Zip(values[s], (n, v) => $"{n}={v}").Order(StringComparer.Ordinal),
                engine.Pipeline.Registry.GetDescriptor(id).Labels.AsSpan().ToArray().Select(l => $"{l.Name}={l.Value}"));
        }

        Assert.Equal(4, engine.Pipeline.Registry.LiveCount);
    }

    [Fact]
    public async Task Add_NegativeOrNaNIncrement_RefusedWithReasonAndCounted()
    {
        await using var engine = new EngineFixture();
        MetricCounter counter = engine.Collector.CreateCounter("jobs_total", ["queue"]);
        BoundCounter bound = counter.Bind("q1");

        Assert.Equal(RejectReason.NegativeCounterIncrement, counter.Add(-1, "q1"));
        Assert.Equal(RejectReason.NegativeCounterIncrement, bound.Add(-0.5));
        Assert.Equal(RejectReason.NotANumber, counter.Add(double.NaN, "q1"));
        Assert.Equal(RejectReason.None, counter.Add(0, "q1"));

        Assert.Equal(2, engine.Collector.GetRejectedCount(RejectReason.NegativeCounterIncrement));
        Assert.Equal(1, engine.Collector.GetRejectedCount(RejectReason.NotANumber));
        Assert.Equal(3, engine.Collector.Rejected);
    }

    [Fact]
    public async Task Record_LabelCountMismatch_CountedRejectAndBindThrows()
    {
        await using var engine = new EngineFixture();
        MetricHistogram histogram = engine.Collector.CreateHistogram("latency_seconds", ["route", "method"]);

        Assert.Equal(RejectReason.LabelCountMismatch, histogram.Record(1, "/a"));
        Assert.Equal(RejectReason.LabelCountMismatch, histogram.Record(1, "/a", "GET", "extra"));
        var e = Assert.Throws<ArgumentException>(() => histogram.Bind("/a"));

        Assert.Equal(2, engine.Collector.GetRejectedCount(RejectReason.LabelCountMismatch));
        Assert.Equal(2, engine.Collector.LabelCountMismatches);
        Assert.Equal(0, engine.Collector.GetRejectedCount(RejectReason.Malformed));
        Assert.Contains("2 label name(s) (route, method) but 1 value(s)", e.Message, StringComparison.Ordinal);
        Assert.Equal(0, engine.Pipeline.GetMetrics().Offered);
    }

    [Fact]
    public async Task Record_LabelNamesNotInOrder_EachValueUnderItsOwnName()
    {
        // The instrument hands labels to the registry in the registry's order of names; the values must
        // still land under the names they were given for, with equal and fresh strings alike.
        await using var engine = new EngineFixture(nowUnixMs: T0 + 5_000);
        MetricHistogram histogram = engine.Collector.CreateHistogram("latency_seconds", ["status", "route", "method"]);
        string status = "200", route = "/a", method = "GET";
        for (int i = 0; i < 10; i++)
        {
            Assert.Equal(RejectReason.None, histogram.Record(i, status, route, method));
            Assert.Equal(RejectReason.None, histogram.Record(100 + i, new string(status.AsSpan()), new string(route.AsSpan()), new string(method.AsSpan())));
            Assert.Equal(RejectReason.None, histogram.Record(1_000, "500", route, method));
        }

        await engine.StopAsync();
        var from = DateTimeOffset.FromUnixTimeMilliseconds(T0);
        MetricStatistics? ok = engine.Queries.GetStatistics("latency_seconds",
            LabelSet.Create(new Label("method", "GET"), new Label("route", "/a"), new Label("status", "200")), from, from.AddMinutes(1));
        MetricStatistics? error = engine.Queries.GetStatistics("latency_seconds",
            LabelSet.Create(new Label("method", "GET"), new Label("route", "/a"), new Label("status", "500")), from, from.AddMinutes(1));
        Assert.NotNull(ok);
        Assert.NotNull(error);
        Assert.Equal(20, ok.Count);
        Assert.Equal(0, ok.Min);
        Assert.Equal(109, ok.Max);
        Assert.Equal(10, error.Count);
        Assert.Equal(1_000, error.Min);
        Assert.Equal(2, engine.Pipeline.Registry.GetSeriesCount("latency_seconds"));
    }

    [Fact]
    public async Task Record_NoTimestamp_EngineClockStampsTheWindow()
    {
        await using var engine = new EngineFixture(nowUnixMs: T0 + 12_345);
        MetricGauge gauge = engine.Collector.CreateGauge("queue_depth", ["queue"]);

        gauge.Set(7, "q1");
        gauge.Bind("q1").Set(9);
        await engine.StopAsync();

        MetricStatistics? stats = engine.Queries.GetStatistics("queue_depth", LabelSet.Create(new Label("queue", "q1")),
            DateTimeOffset.FromUnixTimeMilliseconds(T0), DateTimeOffset.FromUnixTimeMilliseconds(T0 + 60_000));
        Assert.NotNull(stats);
        Assert.Equal(T0 + 10_000, stats.FromUnixMs);
        Assert.Equal(T0 + 20_000, stats.ToUnixMs);
        Assert.Equal(2, stats.Count);
        Assert.Equal(9, stats.Last);
        Assert.Equal(7, stats.Min);
    }

    [Fact]
    public async Task Write_IdleProducer_EngineFlushesWithinTheFlushInterval()
    {
        await using var engine = new EngineFixture();
        BoundHistogram handle = engine.Collector.CreateHistogram("latency_seconds", ["route"]).Bind("/a");

        handle.Record(0.5);
        Assert.Equal(0, engine.Pipeline.GetMetrics().Accepted);
        engine.Time.Advance(engine.Pipeline.Options.ProducerFlushInterval);

        Assert.Equal(1, engine.Pipeline.GetMetrics().Accepted);
    }

    [Fact]
    public async Task Write_ManyThreadsLabelledAndBound_ExactTotals()
    {
        const int Threads = 4;
        const int PerThread = 20_000;
        await using var engine = new EngineFixture(nowUnixMs: T0 + 5_000);
        MetricCounter counter = engine.Collector.CreateCounter("requests_total", ["route"]);
        MetricHistogram histogram = engine.Collector.CreateHistogram("latency_seconds", ["route"]);
        BoundHistogram boundA = histogram.Bind("/a");

        await Task.WhenAll(Enumerable.Range(0, Threads).Select(t => Task.Run(() =>
        {
            for (int i = 0; i < PerThread; i++)
            {
                Assert.Equal(RejectReason.None, counter.Add(2, t % 2 == 0 ? "/a" : "/b"));
                Assert.Equal(RejectReason.None, i % 2 == 0 ? boundA.Record(i) : histogram.Record(i, "/a"));
            }
        })));
        await engine.StopAsync();

        var from = DateTimeOffset.FromUnixTimeMilliseconds(T0);
        var to = from.AddMinutes(1);
        MetricStatistics? a = engine.Queries.GetStatistics("requests_total", LabelSet.Create(new Label("route", "/a")), from, to);
        MetricStatistics? all = engine.Queries.GetMatching("requests_total", LabelSet.Empty, from, to);
        MetricStatistics? latency = engine.Queries.GetStatistics("latency_seconds", LabelSet.Create(new Label("route", "/a")), from, to);
        Assert.Equal(2.0 * PerThread * Threads / 2, a!.Sum);
        Assert.Equal(2.0 * PerThread * Threads, all!.Sum);
        Assert.Equal(2, all.Series);
        Assert.Equal(Threads * PerThread, latency!.Count);
        Assert.Equal(Threads * (PerThread - 1.0) * PerThread / 2, latency.Sum);
        Assert.Equal(engine.Pipeline.GetMetrics().Offered, engine.Pipeline.GetMetrics().EmittedPoints);
    }
}
