using System.Diagnostics.Metrics;
using Monitoring.Stream.Hosting.Bridge;
using Monitoring.Stream.Hosting.Instruments;
using Monitoring.Stream.Hosting.Queries;
using Monitoring.Stream.Hosting.Tests.Support;
using Monitoring.Stream.Model;

namespace Monitoring.Stream.Hosting.Tests.Bridge;

public class MeterBridgeTests
{
    private const long T0 = EngineFixture.T0;

    private static MetricStatistics? Query(EngineFixture engine, string metric, params Label[] labels) =>
        engine.Queries.GetStatistics(metric, LabelSet.Create(labels), DateTimeOffset.FromUnixTimeMilliseconds(T0), DateTimeOffset.FromUnixTimeMilliseconds(T0 + 600_000));

    [Fact]
    public async Task Bridge_AppCounterHistogramAndObservableGauge_ArriveWithExactValues()
    {
        string meterName = "Test.App." + Guid.NewGuid().ToString("N");
        await using var engine = new EngineFixture(nowUnixMs: T0 + 1_000);
        using var meter = new Meter(meterName);
        Counter<long> orders = meter.CreateCounter<long>("shop.orders");
        Histogram<double> duration = meter.CreateHistogram<double>("shop.checkout.duration", unit: "s");
        int queueLength = 17;
        meter.CreateObservableGauge("shop.queue.length", () => new Measurement<int>(queueLength, new KeyValuePair<string, object?>("queue", "main")));
        using var bridge = new MeterBridge(engine.Collector, new MeterBridgeOptions { Meters = { meterName }, ObservableInterval = TimeSpan.FromSeconds(5) }, engine.Time);

        orders.Add(3, new KeyValuePair<string, object?>("region", "eu"));
        orders.Add(4, new KeyValuePair<string, object?>("region", "eu"));
        orders.Add(10, new KeyValuePair<string, object?>("region", "us"));
        foreach (double d in (double[])[0.25, 0.5, 2.0])
        {
            duration.Record(d, new KeyValuePair<string, object?>("payment", "card"), new KeyValuePair<string, object?>("attempt", 1));
        }

        engine.Time.Advance(TimeSpan.FromSeconds(5));   // the sampling interval reads the gauge: 17
        queueLength = 4;
        engine.Time.Advance(TimeSpan.FromSeconds(5));   // and again: 4
        await engine.StopAsync();

        MetricStatistics? eu = Query(engine, "shop_orders", new Label("region", "eu"));
        Assert.Equal(7, eu!.Sum);
        Assert.Equal(2, eu.Count);
        Assert.Equal(10, Query(engine, "shop_orders", new Label("region", "us"))!.Sum);
        MetricStatistics? checkout = Query(engine, "shop_checkout_duration", new Label("payment", "card"), new Label("attempt", "1"));
        Assert.Equal(3, checkout!.Count);
        Assert.Equal(2.75, checkout.Sum);
        Assert.Equal(0.25, checkout.Min);
        Assert.Equal(2.0, checkout.Max);
        MetricStatistics? gauge = Query(engine, "shop_queue_length", new Label("queue", "main"));
        Assert.Equal(2, gauge!.Count);
        Assert.Equal(17, gauge.Max);
        Assert.Equal(4, gauge.Last);
        Assert.Equal(InstrumentKind.Counter, bridge.Metrics["shop_orders"]);
        Assert.Equal(InstrumentKind.Histogram, bridge.Metrics["shop_checkout_duration"]);
        Assert.Equal(InstrumentKind.Gauge, bridge.Metrics["shop_queue_length"]);
    }

    [Fact]
    public async Task Bridge_TenTagsInAnyOrder_OneSeriesWithEveryTagExactValues()
    {
        // More tags than fit in the stack buffer take the thread's scratch array; the same tags in another
        // order are the same series.
        string meterName = "Test.App." + Guid.NewGuid().ToString("N");
        await using var engine = new EngineFixture(nowUnixMs: T0 + 1_000);
        using var meter = new Meter(meterName);
        Histogram<double> wide = meter.CreateHistogram<double>("wide.duration");
        using var bridge = new MeterBridge(engine.Collector, new MeterBridgeOptions { Meters = { meterName } }, engine.Time);
        KeyValuePair<string, object?>[] tags = [.. Enumerable.Range(0, 10).Select(i => new KeyValuePair<string, object?>("t" + (9 - i), i))];

        wide.Record(1.5, tags);
        wide.Record(2.5, [.. tags.Reverse()]);
        wide.Record(4.0, new KeyValuePair<string, object?>("t0", "x"));
        await engine.StopAsync();

        Label[] labels = [.. Enumerable.Range(0, 10).Select(i => new Label("t" + (9 - i), i.ToString(System.Globalization.CultureInfo.InvariantCulture)))];
        MetricStatistics? all = Query(engine, "wide_duration", labels);
        Assert.Equal(2, all!.Count);
        Assert.Equal(4.0, all.Sum);
        Assert.Equal(4.0, Query(engine, "wide_duration", new Label("t0", "x"))!.Sum);
        Assert.Equal(3, bridge.Measurements);
    }

    [Theory]
    [InlineData(2)]
    [InlineData(4)]
    [InlineData(5)]
    [InlineData(8)]
    public async Task Bridge_TagsInDescendingOrderAndReversed_OneSeriesWithEveryTag(int tagCount)
    {
        // Up to four tags are stored at fixed positions of a local, five to eight through a span of it: either
        // way a tag's key stays with its value, and either order of the same tags is the same series.
        string meterName = "Test.App." + Guid.NewGuid().ToString("N");
        await using var engine = new EngineFixture(nowUnixMs: T0 + 1_000);
        using var meter = new Meter(meterName);
        Histogram<double> shaped = meter.CreateHistogram<double>("shaped.duration");
        using var bridge = new MeterBridge(engine.Collector, new MeterBridgeOptions { Meters = { meterName } }, engine.Time);
        KeyValuePair<string, object?>[] tags = [.. Enumerable.Range(0, tagCount).Select(i => new KeyValuePair<string, object?>("k" + (char)('z' - i), "v" + i))];

        shaped.Record(1.5, tags);
        shaped.Record(2.5, [.. tags.Reverse()]);
        await engine.StopAsync();

        Label[] labels = [.. Enumerable.Range(0, tagCount).Select(i => new Label("k" + (char)('z' - i), "v" + i))];
        MetricStatistics? all = Query(engine, "shaped_duration", labels);
        Assert.Equal(2, all!.Count);
        Assert.Equal(4.0, all.Sum);
        Assert.Equal(1, engine.Pipeline.Registry.GetSeriesCount("shaped_duration"));
    }

    [Fact]
    public async Task Bridge_ObservableCounterAndUpDownCounter_IncreasesAndNetChange()
    {
        string meterName = "Test.App." + Guid.NewGuid().ToString("N");
        await using var engine = new EngineFixture(nowUnixMs: T0 + 1_000);
        using var meter = new Meter(meterName);
        long total = 100;
        meter.CreateObservableCounter("jobs.done", () => total);
        UpDownCounter<int> active = meter.CreateUpDownCounter<int>("jobs.active");
        Counter<int> bad = meter.CreateCounter<int>("jobs.bad");
        using var bridge = new MeterBridge(engine.Collector, new MeterBridgeOptions { Meters = { "Test.App.*" } }, engine.Time);

        bridge.RecordObservableInstruments();
        total = 130;
        bridge.RecordObservableInstruments();
        active.Add(5);
        active.Add(-2);
        bad.Add(-1);
        await engine.StopAsync();

        MetricStatistics? done = Query(engine, "jobs_done");
        Assert.Equal(130, done!.Sum);
        Assert.Equal(30, done.Last);
        Assert.Equal(3, Query(engine, "jobs_active")!.Sum);
        Assert.Null(Query(engine, "jobs_bad"));
        Assert.Equal(1, bridge.Refused);
        Assert.Equal(1, engine.Collector.GetRejectedCount(RejectReason.NegativeCounterIncrement));
    }

    [Fact]
    public async Task Bridge_SameTagsInAnyOrderAndSanitizedKeys_OneSeriesWithExactTotals()
    {
        string meterName = "Test.App." + Guid.NewGuid().ToString("N");
        await using var engine = new EngineFixture(nowUnixMs: T0 + 1_000);
        using var meter = new Meter(meterName);
        Counter<long> requests = meter.CreateCounter<long>("app.requests");
        using var bridge = new MeterBridge(engine.Collector, new MeterBridgeOptions { Meters = { meterName } }, engine.Time);
        var route = new KeyValuePair<string, object?>("route", "/a");
        var method = new KeyValuePair<string, object?>("http.method", "GET");
        var status = new KeyValuePair<string, object?>("status", 200);

        for (int i = 0; i < 50; i++)
        {
            requests.Add(1, route, method, status);
            requests.Add(2, status, route, method);
            requests.Add(4, method, status, new KeyValuePair<string, object?>("route", new string("/a".AsSpan())));
        }

        await engine.StopAsync();
        MetricStatistics? all = Query(engine, "app_requests", new Label("http_method", "GET"), new Label("route", "/a"), new Label("status", "200"));
        Assert.Equal(150, all!.Count);
        Assert.Equal(350, all.Sum);
        Assert.Equal(1, engine.Pipeline.Registry.GetSeriesCount("app_requests"));
    }

    [Fact]
    public async Task Bridge_UnselectedMeter_CreatesNoSeries()
    {
        await using var engine = new EngineFixture(nowUnixMs: T0 + 1_000);
        using var selected = new Meter("Test.Selected." + Guid.NewGuid().ToString("N"));
        using var other = new Meter("Test.Other." + Guid.NewGuid().ToString("N"));
        using var bridge = new MeterBridge(engine.Collector, new MeterBridgeOptions { Meters = { selected.Name } }, engine.Time);

        other.CreateCounter<long>("other.calls").Add(1);
        selected.CreateCounter<long>("selected.calls").Add(1);
        await engine.StopAsync();

        Assert.Equal(1, engine.Pipeline.Registry.Count);
        Assert.Equal(1, Query(engine, "selected_calls")!.Sum);
    }

    [Theory]
    [InlineData("http.server.request.duration", "http_server_request_duration")]
    [InlineData("9lives-count", "_lives_count")]
    [InlineData("a:b", "a:b")]
    public void ToMetricName_OtelStyleNames_PrometheusNames(string instrument, string expected) =>
        Assert.Equal(expected, MeterBridge.ToMetricName(string.Empty, instrument));
}
