using System.Diagnostics;
using Monitoring.Stream.Hosting.Instruments;
using Monitoring.Stream.Hosting.Queries;
using Monitoring.Stream.Hosting.Tests.Support;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;

namespace Monitoring.Stream.Hosting.Tests.Probe;

/// <summary>
/// The instruments of docs/sdk.md ("Instruments") attacked through the public API only, as a careless or hostile
/// application would: eight threads on one series, an instrument re-created with its label names in another order,
/// names past the registry's length limit, values at the edges of the double range, and writes after the engine stopped.
/// </summary>
public class InstrumentsBlackBoxTests
{
    private const long T0 = EngineFixture.T0;
    private const long WindowMs = 10_000;

    [Fact]
    public async Task Record_EightThreadsLabelledAndBoundOverThreeWindows_QueryHasExactCountSumMinMax()
    {
        // "Thread-safe": four threads pass labels per call, four share one bound handle, all on the same series,
        // spread over three windows by explicit event time; every value is distinct, so sum, min and max are exact.
        await using var engine = new EngineFixture();
        MetricHistogram histogram = engine.Collector.CreateHistogram("probe_eight_seconds", ["region", "route"]);
        BoundHistogram bound = histogram.Bind("eu", "/cart");
        const int Threads = 8;
        const int PerThread = 15_000;
        long refused = 0;
        using var start = new Barrier(Threads);
        Task[] workers = [.. Enumerable.Range(0, Threads).Select(t => Task.Factory.StartNew(() =>
        {
            start.SignalAndWait(TimeSpan.FromSeconds(10));
            for (int i = 0; i < PerThread; i++)
            {
                double value = (t * PerThread) + i - 20_000;    // negatives, zero and positives, each once
                long ts = T0 + (i % 3 * WindowMs) + (t * 7);
                RejectReason r = t % 2 == 0 ? histogram.RecordAt(ts, value, "eu", "/cart") : bound.Record(value, ts);
                if (r != RejectReason.None)
                {
                    Interlocked.Increment(ref refused);
                }
            }
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default))];
        await Task.WhenAll(workers).WaitAsync(TimeSpan.FromSeconds(30));
        await engine.StopAsync();

        Assert.Equal(0, refused);
        MetricStatistics? s = engine.Queries.GetStatistics("probe_eight_seconds",
            LabelSet.Create(new Label("region", "eu"), new Label("route", "/cart")),
            DateTimeOffset.FromUnixTimeMilliseconds(T0), DateTimeOffset.FromUnixTimeMilliseconds(T0 + (3 * WindowMs)));
        Assert.NotNull(s);
        long n = (long)Threads * PerThread;
        Assert.Equal(n, s.Count);
        Assert.Equal(3, s.Windows);
        Assert.Equal(1, s.Series);
        Assert.Equal(-20_000, s.Min);
        Assert.Equal(n - 1 - 20_000, s.Max);
        Assert.Equal((n * (n - 1) / 2) - (n * 20_000), s.Sum);
        Assert.Equal(n, engine.Pipeline.GetMetrics().EmittedPoints);
    }

    [Fact]
    public async Task CreateCounter_SameNameLabelNamesInAnotherOrder_ValuesLandUnderTheirOwnNamesOrCreationThrows()
    {
        // "a name taken by another kind or label set throws"; "Creates (or returns the existing)". Re-creating with the
        // same names in another order is either refused, or each value must still land under the name it was given.
        await using var engine = new EngineFixture();
        MetricCounter first = engine.Collector.CreateCounter("probe_reordered_total", ["region", "channel"]);
        MetricCounter second;
        try
        {
            second = engine.Collector.CreateCounter("probe_reordered_total", ["channel", "region"]);
        }
        catch (MetricValidationException)
        {
            return;   // refused at creation: documented, nothing can be mislabelled
        }

        Assert.Equal(RejectReason.None, first.AddAt(T0, 1, "eu", "web"));
        Assert.Equal(RejectReason.None, second.AddAt(T0, 10, "web", "eu"));   // channel=web, region=eu, in its own order
        await engine.StopAsync();

        MetricStatistics? s = engine.Queries.GetStatistics("probe_reordered_total",
            LabelSet.Create(new Label("region", "eu"), new Label("channel", "web")),
            DateTimeOffset.FromUnixTimeMilliseconds(T0), DateTimeOffset.FromUnixTimeMilliseconds(T0 + WindowMs));
        Assert.NotNull(s);
        Assert.Equal(2, s.Count);
        Assert.Equal(11, s.Sum);
        Assert.Null(engine.Queries.GetStatistics("probe_reordered_total",
            LabelSet.Create(new Label("region", "web"), new Label("channel", "eu")),
            DateTimeOffset.FromUnixTimeMilliseconds(T0), DateTimeOffset.FromUnixTimeMilliseconds(T0 + WindowMs)));
    }

    [Fact]
    public async Task CreateHistogram_NameOrLabelNameLongerThanTheRegistryAllows_ThrowsAtCreation()
    {
        // Names "throw MetricValidationException when the instrument is created", and a call "never throws": a name the
        // registry will refuse for its length (Pipeline:Registry:MaxNameLength, 256) must be refused at creation, not
        // leave an instrument whose every call is refused.
        await using var engine = new EngineFixture();
        string longName = "m" + new string('x', 300);
        string longLabel = "l" + new string('y', 300);

        var byName = Assert.Throws<MetricValidationException>(() => engine.Collector.CreateHistogram(longName, ["route"]));
        Assert.Equal(RejectReason.InvalidMetricName, byName.Reason);
        var byLabel = Assert.Throws<MetricValidationException>(() => engine.Collector.CreateHistogram("probe_long_label", [longLabel]));
        Assert.Equal(RejectReason.InvalidLabelName, byLabel.Reason);
    }

    [Fact]
    public async Task Instruments_EdgeValues_DocumentedReasonCountedWhereDocumentedAndTheRestExact()
    {
        // "a negative or NaN counter increment ... by the collector (GetRejectedCount)", "a NaN gauge value ... by the
        // engine (its self-metrics, per source)"; README: infinities and |x| > 1e100 are refused with a reason. Found: a
        // counter refuses infinite and out-of-range increments itself too (docs/sdk.md now says so); each refusal is
        // counted exactly once, in the collector or in the engine.
        await using var engine = new EngineFixture();
        MetricCounter counter = engine.Collector.CreateCounter("probe_edge_total", ["k"]);
        MetricGauge gauge = engine.Collector.CreateGauge("probe_edge_level", ["k"]);
        MetricHistogram histogram = engine.Collector.CreateHistogram("probe_edge_values", ["k"]);

        Assert.Equal(RejectReason.NotANumber, counter.AddAt(T0, double.NaN, "a"));
        Assert.Equal(RejectReason.NegativeCounterIncrement, counter.AddAt(T0, -double.Epsilon, "a"));
        Assert.Equal(RejectReason.Infinity, counter.AddAt(T0, double.PositiveInfinity, "a"));
        Assert.Equal(RejectReason.None, counter.AddAt(T0, -0.0, "a"));              // negative zero is no decrease
        Assert.Equal(RejectReason.None, counter.AddAt(T0, double.Epsilon, "a"));    // subnormal
        Assert.Equal(RejectReason.None, counter.AddAt(T0, 1e100, "a"));
        Assert.Equal(RejectReason.ValueOutOfRange, counter.AddAt(T0, 1.0000000000000001e101, "a"));
        Assert.Equal(RejectReason.NotANumber, gauge.SetAt(T0, double.NaN, "a"));
        Assert.Equal(RejectReason.Infinity, gauge.SetAt(T0, double.NegativeInfinity, "a"));
        Assert.Equal(RejectReason.ValueOutOfRange, gauge.SetAt(T0, -double.MaxValue, "a"));
        Assert.Equal(RejectReason.None, gauge.SetAt(T0, -1e100, "a"));
        Assert.Equal(RejectReason.None, histogram.RecordAt(T0, double.Epsilon, "a"));
        Assert.Equal(RejectReason.None, histogram.RecordAt(T0, -double.Epsilon, "a"));
        Assert.Equal(RejectReason.None, histogram.RecordAt(T0, 0.0, "a"));
        Assert.Equal(RejectReason.ValueOutOfRange, histogram.RecordAt(T0, double.MaxValue, "a"));
        await engine.StopAsync();

        Assert.Equal(1, engine.Collector.GetRejectedCount(RejectReason.NotANumber));
        Assert.Equal(1, engine.Collector.GetRejectedCount(RejectReason.NegativeCounterIncrement));
        PipelineMetrics m = engine.Pipeline.GetMetrics();
        SourceMetrics source = m.Sources.Single(s => s.Source == "test-sdk");
        Assert.Equal(1, engine.Collector.GetRejectedCount(RejectReason.Infinity));         // a counter refuses every bad increment itself
        Assert.Equal(1, engine.Collector.GetRejectedCount(RejectReason.ValueOutOfRange));
        Assert.Equal(4, engine.Collector.Rejected);
        Assert.Equal(4, source.Rejected);   // gauge NaN, -inf, -MaxValue; histogram MaxValue: each counted once, by the engine
        Assert.Equal(1, m.RejectedByReason.GetValueOrDefault(RejectReason.Infinity));
        Assert.Equal(2, m.RejectedByReason.GetValueOrDefault(RejectReason.ValueOutOfRange));
        Assert.Equal(1, m.RejectedByReason.GetValueOrDefault(RejectReason.NotANumber));

        var from = DateTimeOffset.FromUnixTimeMilliseconds(T0);
        var to = DateTimeOffset.FromUnixTimeMilliseconds(T0 + WindowMs);
        LabelSet a = LabelSet.Create(new Label("k", "a"));
        MetricStatistics c = engine.Queries.GetStatistics("probe_edge_total", a, from, to)!;
        Assert.Equal(3, c.Count);
        Assert.Equal(1e100, c.Sum);
        Assert.Equal(0.0, c.Min);
        MetricStatistics g = engine.Queries.GetStatistics("probe_edge_level", a, from, to)!;
        Assert.Equal(1, g.Count);
        Assert.Equal(-1e100, g.Last);
        MetricStatistics h = engine.Queries.GetStatistics("probe_edge_values", a, from, to)!;
        Assert.Equal(3, h.Count);
        Assert.Equal(-double.Epsilon, h.Min);
        Assert.Equal(double.Epsilon, h.Max);
        Assert.Equal(0.0, h.Sum);
    }

    [Fact]
    public async Task Write_AfterThePipelineStoppedAndWasDisposed_WriterClosedNeverThrowsNeverHangs()
    {
        // README: writes after Dispose/StopAsync are refused as WriterClosed; sdk.md: "A call never throws".
        var engine = new EngineFixture();
        MetricHistogram histogram = engine.Collector.CreateHistogram("probe_after_stop", ["k"]);
        MetricCounter counter = engine.Collector.CreateCounter("probe_after_stop_total", ["k"]);
        BoundHistogram bound = histogram.Bind("a");
        BoundCounter boundCounter = counter.Bind("a");
        Assert.Equal(RejectReason.None, bound.Record(1, T0));
        await engine.StopAsync();
        long emitted = engine.Pipeline.GetMetrics().EmittedPoints;

        var stopwatch = Stopwatch.StartNew();
        for (int i = 0; i < 5_000; i++)   // more than a writer's buffer: a full buffer after stop must not block
        {
            Assert.Equal(RejectReason.WriterClosed, bound.Record(2, T0));
            Assert.Equal(RejectReason.WriterClosed, histogram.RecordAt(T0, 2, "a"));
            Assert.Equal(RejectReason.WriterClosed, histogram.Record(2, "new-series"));
            Assert.Equal(RejectReason.WriterClosed, boundCounter.Add(1));
        }

        engine.Collector.Flush();
        await engine.Pipeline.DisposeAsync();
        Assert.Equal(RejectReason.WriterClosed, bound.Record(3));
        Assert.Equal(RejectReason.WriterClosed, counter.Add(1, "b"));
        engine.Collector.Flush();
        engine.Collector.Dispose();
        Assert.Equal(RejectReason.WriterClosed, bound.Record(3));
        Assert.InRange(stopwatch.Elapsed, TimeSpan.Zero, TimeSpan.FromSeconds(10));

        PipelineMetrics m = engine.Pipeline.GetMetrics();
        Assert.Equal(emitted, m.EmittedPoints);
        Assert.Equal(1, emitted);
        Assert.True(m.RejectedByReason.GetValueOrDefault(RejectReason.WriterClosed) >= 20_000,
            $"every refused write after the stop is counted as WriterClosed; counted {m.RejectedByReason.GetValueOrDefault(RejectReason.WriterClosed)}");
    }

    [Fact]
    public async Task Record_EmptyLabelValue_SameSeriesAsTheLabelAbsent()
    {
        // README "Data model": "a label with an empty value is the same as no label".
        await using var engine = new EngineFixture();
        MetricHistogram histogram = engine.Collector.CreateHistogram("probe_empty_value", ["route", "status"]);
        Assert.Equal(RejectReason.None, histogram.RecordAt(T0, 1, "/a", string.Empty));
        Assert.Equal(RejectReason.None, histogram.RecordAt(T0, 2, "/a", "200"));
        Assert.Equal(RejectReason.None, histogram.RecordAt(T0, 4, string.Empty, string.Empty));
        await engine.StopAsync();

        var from = DateTimeOffset.FromUnixTimeMilliseconds(T0);
        var to = DateTimeOffset.FromUnixTimeMilliseconds(T0 + WindowMs);
        Assert.Equal(1, engine.Queries.GetStatistics("probe_empty_value", LabelSet.Create(new Label("route", "/a")), from, to)!.Sum);
        Assert.Equal(4, engine.Queries.GetStatistics("probe_empty_value", LabelSet.Empty, from, to)!.Sum);
        Assert.Equal(7, engine.Queries.GetMatching("probe_empty_value", LabelSet.Empty, from, to)!.Sum);
        Assert.Equal(3, engine.Queries.GetMatching("probe_empty_value", LabelSet.Create(new Label("route", "/a")), from, to)!.Sum);
    }
}
