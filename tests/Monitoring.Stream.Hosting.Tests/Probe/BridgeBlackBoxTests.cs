using System.Diagnostics.Metrics;
using System.Globalization;
using Monitoring.Stream.Hosting.Bridge;
using Monitoring.Stream.Hosting.Instruments;
using Monitoring.Stream.Hosting.Queries;
using Monitoring.Stream.Hosting.Tests.Support;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;

namespace Monitoring.Stream.Hosting.Tests.Probe;

/// <summary>
/// The Meter bridge of docs/sdk.md ("Bridge from System.Diagnostics.Metrics") fed by application code that does what
/// System.Diagnostics.Metrics allows: tag values of every type under a culture with a decimal comma, tag sets that vary
/// from call to call, too many or invalid tags, instrument names that collide once sanitised, observable callbacks that
/// throw, and a Meter disposed while a thread records. "Nothing changes at the call sites": no call may throw.
/// </summary>
public class BridgeBlackBoxTests
{
    private const long T0 = EngineFixture.T0;

    private static KeyValuePair<string, object?> Tag(string key, object? value) => new(key, value);

    private static MetricStatistics? Query(EngineFixture engine, string metric, params Label[] labels) =>
        engine.Queries.GetStatistics(metric, LabelSet.Create(labels), DateTimeOffset.FromUnixTimeMilliseconds(T0 - 600_000), DateTimeOffset.FromUnixTimeMilliseconds(T0 + 600_000));

    private static string NewMeterName() => "Probe.Bridge." + Guid.NewGuid().ToString("N");

    [Fact]
    public async Task Bridge_TagValuesOfEveryTypeUnderADecimalCommaCulture_InvariantLabelValues()
    {
        // "tags become labels (values formatted with the invariant culture)"; a null value is the label absent (README).
        string meterName = NewMeterName();
        await using var engine = new EngineFixture(nowUnixMs: T0);
        using var meter = new Meter(meterName);
        Histogram<double> h = meter.CreateHistogram<double>("probe.types");
        using var bridge = new MeterBridge(engine.Collector, new MeterBridgeOptions { Meters = { meterName } }, engine.Time);
        var comma = (CultureInfo)CultureInfo.InvariantCulture.Clone();
        comma.NumberFormat.NumberDecimalSeparator = ",";
        comma.NumberFormat.NumberGroupSeparator = ".";
        comma.NumberFormat.NegativeSign = "~";
        CultureInfo before = CultureInfo.CurrentCulture;
        CultureInfo.CurrentCulture = comma;
        try
        {
            h.Record(1, Tag("v", 42));
            h.Record(2, Tag("v", 9_000_000_000L));
            h.Record(3, Tag("v", 1.5));
            h.Record(4, Tag("v", 0.25f));
            h.Record(5, Tag("v", -7));
            h.Record(6, Tag("v", 2.5m));
            h.Record(7, Tag("v", true));
            h.Record(8, Tag("v", DayOfWeek.Monday));
            h.Record(9, Tag("v", null));
            h.Record(10, Tag("v", (short)3), Tag("w", (byte)200));
        }
        finally
        {
            CultureInfo.CurrentCulture = before;
        }

        await engine.StopAsync();
        (string Value, double Sum)[] expected = [("42", 1), ("9000000000", 2), ("1.5", 3), ("0.25", 4), ("-7", 5), ("2.5", 6), ("True", 7), ("Monday", 8)];
        foreach ((string value, double sum) in expected)
        {
            MetricStatistics? s = Query(engine, "probe_types", new Label("v", value));
            Assert.True(s is not null, $"no series v=\"{value}\"; series: {engine.Queries.GetGrouped("probe_types", LabelSet.Empty, ["v", "w"], TimeSpan.FromDays(1)).Select(g => g.Group.ToString()).Aggregate("", (a, b) => a + " " + b)}");
            Assert.Equal(sum, s.Sum);
        }

        Assert.Equal(9, Query(engine, "probe_types")!.Sum);
        Assert.Equal(10, Query(engine, "probe_types", new Label("v", "3"), new Label("w", "200"))!.Sum);
    }

    [Fact]
    public async Task Bridge_TagKeysVaryingFromCallToCall_OneSeriesPerTagSetExactSums()
    {
        // System.Diagnostics.Metrics fixes no tag keys per instrument: each call's tags are its series' labels.
        string meterName = NewMeterName();
        await using var engine = new EngineFixture(nowUnixMs: T0);
        using var meter = new Meter(meterName);
        Counter<long> c = meter.CreateCounter<long>("probe.vary");
        using var bridge = new MeterBridge(engine.Collector, new MeterBridgeOptions { Meters = { meterName } }, engine.Time);

        c.Add(1, Tag("region", "eu"));
        c.Add(2, Tag("region", "eu"), Tag("channel", "web"));
        c.Add(4);
        c.Add(8, Tag("channel", "web"), Tag("region", "eu"));
        c.Add(16, Tag("channel", "app"));
        await engine.StopAsync();

        Assert.Equal(1, Query(engine, "probe_vary", new Label("region", "eu"))!.Sum);
        Assert.Equal(10, Query(engine, "probe_vary", new Label("region", "eu"), new Label("channel", "web"))!.Sum);
        Assert.Equal(4, Query(engine, "probe_vary")!.Sum);
        Assert.Equal(16, Query(engine, "probe_vary", new Label("channel", "app"))!.Sum);
        Assert.Equal(0, engine.Pipeline.GetMetrics().Rejected + bridge.Refused);
    }

    [Fact]
    public async Task Bridge_TooManyOrInvalidTagsAndNaN_CallSiteNeverThrowsEachRefusalCountedOnce()
    {
        string meterName = NewMeterName();
        await using var engine = new EngineFixture(nowUnixMs: T0);
        using var meter = new Meter(meterName);
        Histogram<double> h = meter.CreateHistogram<double>("probe.hostile");
        Counter<double> c = meter.CreateCounter<double>("probe.hostile.total");
        using var bridge = new MeterBridge(engine.Collector, new MeterBridgeOptions { Meters = { meterName } }, engine.Time);
        KeyValuePair<string, object?>[] forty = [.. Enumerable.Range(0, 40).Select(i => Tag("t" + i.ToString(CultureInfo.InvariantCulture), "x"))];
        KeyValuePair<string, object?>[] twenty = [.. forty.Take(20)];

        Exception? thrown = Record.Exception(() =>
        {
            h.Record(1, forty);                       // 40 labels: beyond Pipeline:Registry:MaxLabelsPerSeries (32)
            h.Record(2, twenty);                      // 20 labels: fine
            h.Record(3, Tag(string.Empty, "x"));      // an empty tag key
            h.Record(4, Tag("__reserved", "x"));      // a reserved label name
            h.Record(5, Tag("k", new string('v', 5_000)));   // beyond MaxLabelValueLength (4096)
            h.Record(double.NaN, Tag("k", "a"));
            h.Record(double.PositiveInfinity, Tag("k", "a"));
            c.Add(-1, Tag("k", "a"));
            c.Add(double.NaN, Tag("k", "a"));
            h.Record(6, Tag("k", "a"));
        });
        await engine.StopAsync();

        Assert.Null(thrown);
        Assert.Equal(10, bridge.Measurements);
        PipelineMetrics m = engine.Pipeline.GetMetrics();
        long refused = m.Rejected + engine.Collector.Rejected;   // the bridge's own refusals are the collector's too (bridge.Refused)
        MetricStatistics? all = engine.Queries.GetMatching("probe_hostile", LabelSet.Empty, DateTimeOffset.FromUnixTimeMilliseconds(T0 - 600_000), DateTimeOffset.FromUnixTimeMilliseconds(T0 + 600_000));
        long aggregated = all?.Count ?? 0;

        // Every measurement is either aggregated (under its labels, or sanitised ones) or refused and counted: none lost.
        Assert.Equal(10, aggregated + refused + (engine.Queries.GetMatching("probe_hostile_total", LabelSet.Empty, DateTimeOffset.FromUnixTimeMilliseconds(T0 - 600_000), DateTimeOffset.FromUnixTimeMilliseconds(T0 + 600_000))?.Count ?? 0));
        Assert.Equal(2, Query(engine, "probe_hostile", [.. twenty.Select(t => new Label(t.Key, "x"))])!.Sum);
        Assert.Equal(6, Query(engine, "probe_hostile", new Label("k", "a"))!.Sum);
        Assert.True(refused >= 5, $"the 40-label call, the over-long value, NaN, infinity, the negative and the NaN increment are refused; counted {refused}");
    }

    [Fact]
    public async Task Bridge_InstrumentNamesCollidingOnceSanitised_CallSitesNeverThrowFirstKeepsTheName()
    {
        // "x.total" and "x_total" are both the engine metric x_total; a counter and a histogram cannot share it. The
        // application's calls must still never throw.
        string meterName = NewMeterName();
        await using var engine = new EngineFixture(nowUnixMs: T0);
        using var meter = new Meter(meterName);
        Counter<long> counter = meter.CreateCounter<long>("probe.collide.total");
        Histogram<double> histogram = meter.CreateHistogram<double>("probe_collide_total");
        Gauge<double> gauge = meter.CreateGauge<double>("probe-collide-total");
        using var bridge = new MeterBridge(engine.Collector, new MeterBridgeOptions { Meters = { meterName } }, engine.Time);

        Exception? thrown = Record.Exception(() =>
        {
            counter.Add(5, Tag("k", "a"));
            histogram.Record(0.5, Tag("k", "a"));
            gauge.Record(7, Tag("k", "a"));
            counter.Add(6, Tag("k", "a"));
        });
        await engine.StopAsync();

        Assert.Null(thrown);
        MetricStatistics? s = Query(engine, "probe_collide_total", new Label("k", "a"));
        Assert.NotNull(s);
        Assert.Equal(InstrumentKind.Counter, bridge.Metrics["probe_collide_total"]);
        Assert.Equal(11, s.Sum);   // the counter's increments only: the colliding instruments' values never mix into it
        Assert.Equal(2, s.Count);
        Assert.Equal(2, bridge.InstrumentConflicts);
    }

    [Fact]
    public async Task Bridge_ObservableCallbackThrows_OtherInstrumentsStillReadAndTheTimerSurvives()
    {
        string meterName = NewMeterName();
        await using var engine = new EngineFixture(nowUnixMs: T0);
        using var meter = new Meter(meterName);
        int calls = 0;
        meter.CreateObservableGauge<double>("probe.bad", new Func<double>(() =>
        {
            calls++;
            throw new InvalidOperationException("callback failed");
        }));
        double level = 3;
        meter.CreateObservableGauge("probe.good", () => level);
        meter.CreateObservableCounter("probe.good.total", () => (long)(level * 10));
        using var bridge = new MeterBridge(engine.Collector, new MeterBridgeOptions { Meters = { meterName }, ObservableInterval = TimeSpan.FromSeconds(5) }, engine.Time);

        // The interval's timer runs the callbacks: an exception escaping a timer callback would end the process.
        Exception? onTimer = Record.Exception(() => engine.Time.Advance(TimeSpan.FromSeconds(5)));
        level = 5;
        Exception? onTimer2 = Record.Exception(() => engine.Time.Advance(TimeSpan.FromSeconds(5)));
        await engine.StopAsync();

        Assert.Null(onTimer);
        Assert.Null(onTimer2);
        Assert.Equal(2, bridge.ObservableFailures);
        Assert.Equal("callback failed", bridge.LastObservableError);
        Assert.Equal(2, calls);
        MetricStatistics? good = Query(engine, "probe_good");
        Assert.NotNull(good);
        Assert.Equal(2, good.Count);
        Assert.Equal(5, good.Last);
        Assert.Equal(50, Query(engine, "probe_good_total")!.Sum);   // 30 (the total since the counter started), then 20 more
    }

    [Fact]
    public async Task Bridge_MeterDisposedWhileAThreadRecordsThenRecreated_NoThrowEveryMeasurementAccounted()
    {
        string meterName = NewMeterName();
        await using var engine = new EngineFixture(nowUnixMs: T0);
        var meter = new Meter(meterName);
        Histogram<double> h = meter.CreateHistogram<double>("probe.disposed");
        using var bridge = new MeterBridge(engine.Collector, new MeterBridgeOptions { Meters = { meterName } }, engine.Time);
        using var started = new ManualResetEventSlim();
        using var stop = new CancellationTokenSource();
        long calls = 0;
        Task recorder = Task.Factory.StartNew(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                h.Record(1, Tag("k", "a"));
                if (++calls == 1_000)
                {
                    started.Set();
                }
            }
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        Assert.True(started.Wait(TimeSpan.FromSeconds(10)), "the recorder started");
        meter.Dispose();
        long atDispose = bridge.Measurements;
        await Task.Delay(20);   // the recorder keeps calling into the disposed meter (bounded below by stop)
        await stop.CancelAsync();
        await recorder.WaitAsync(TimeSpan.FromSeconds(10));   // rethrows anything the call site threw

        // A new Meter of the same name after the old one's disposal is bridged again.
        using var again = new Meter(meterName);
        again.CreateCounter<long>("probe.disposed.again").Add(3);
        await engine.StopAsync();

        Assert.InRange(bridge.Measurements - atDispose, 1, 1 + 2);   // at most the calls in flight at the disposal, plus the new counter's
        MetricStatistics? s = Query(engine, "probe_disposed", new Label("k", "a"));
        Assert.Equal(bridge.Measurements - 1, s!.Count);
        Assert.Equal(3, Query(engine, "probe_disposed_again")!.Sum);
    }
}
