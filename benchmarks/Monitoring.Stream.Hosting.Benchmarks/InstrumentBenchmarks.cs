using System.Diagnostics;
using System.Diagnostics.Metrics;
using BenchmarkDotNet.Attributes;
using Monitoring.Stream.Hosting.Bridge;
using Monitoring.Stream.Hosting.Instruments;
using Monitoring.Stream.Pipeline;
using OpenTelemetry;
using OpenTelemetry.Metrics;

namespace Monitoring.Stream.Hosting.Benchmarks;

/// <summary>
/// One histogram call with three labels, in the same process and run: OpenTelemetry .NET's
/// <c>Histogram&lt;double&gt;.Record</c> with a <see cref="TagList"/> (the baseline), the engine's histogram
/// with label values per call, a bound handle, and the Meter bridge (an app's own Meter histogram fed into
/// the engine).
/// </summary>
/// <remarks>
/// What is timed differs: OpenTelemetry aggregates inside <c>Record</c>, on the calling thread; the engine's
/// calls only resolve the series and append to a per-thread buffer, and the shards aggregate on their own
/// threads, outside the time (points they cannot take are dropped, DropNewest, and printed at cleanup).
/// So these are producer-thread call costs, not end-to-end costs; <see cref="CpuPerPoint"/> measures the
/// process CPU per point with the shards' work included.
/// </remarks>
[MemoryDiagnoser]
public class InstrumentBenchmarks
{
    private const int Calls = 1024;
    private const string Metric = "http_server_request_duration_seconds";
    private MeterProvider _otelProvider = null!;
    private Meter _otelMeter = null!;
    private Histogram<double> _otelHistogram = null!;
    private TagList[] _tags = [];
    private Meter _bridgedMeter = null!;
    private Histogram<double> _bridgedHistogram = null!;
    private MetricsPipeline _pipeline = null!;
    private MetricsCollector _collector = null!;
    private MeterBridge _bridge = null!;
    private MetricHistogram _histogram = null!;
    private string[][] _labelValues = [];
    private BoundHistogram[] _handles = [];
    private int[] _visit = [];
    private double[] _values = [];
    private int _next;

    [Params(1_000, 100_000)]
    public int Series { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        string otelMeter = "bench-otel-" + Guid.NewGuid().ToString("N");
        _otelProvider = Sdk.CreateMeterProviderBuilder()
            .AddMeter(otelMeter)
            .AddView(Metric, new MetricStreamConfiguration { CardinalityLimit = Series + 10 })
            .AddInMemoryExporter(new List<Metric>())
            .Build()!;
        _otelMeter = new Meter(otelMeter);
        _otelHistogram = _otelMeter.CreateHistogram<double>(Metric);
        _pipeline = new MetricsPipeline(new MetricsPipelineOptions { Instance = "bench" }, []);
        _pipeline.Start();
        _collector = new MetricsCollector(_pipeline, "bench");
        _histogram = _collector.CreateHistogram(Metric, ["method", "route", "status"]);
        string bridged = "bench-bridged-" + Guid.NewGuid().ToString("N");
        _bridge = new MeterBridge(_collector, new MeterBridgeOptions { Meters = { bridged }, MetricPrefix = "bridged_" });
        _bridgedMeter = new Meter(bridged);
        _bridgedHistogram = _bridgedMeter.CreateHistogram<double>(Metric);
        _labelValues = new string[Series][];
        _tags = new TagList[Series];
        _handles = new BoundHistogram[Series];
        for (int i = 0; i < Series; i++)
        {
            _labelValues[i] = [i % 2 == 0 ? "GET" : "POST", "/api/items/" + (i / 4), (200 + (i % 4)).ToString(System.Globalization.CultureInfo.InvariantCulture)];
            _tags[i] = new TagList { { "method", _labelValues[i][0] }, { "route", _labelValues[i][1] }, { "status", _labelValues[i][2] } };
            _handles[i] = _histogram.Bind(_labelValues[i]);
            _bridgedHistogram.Record(0, _tags[i]);
            _otelHistogram.Record(0, _tags[i]);
        }

        var random = new Random(3);
        _visit = [.. Enumerable.Range(0, 1 << 16).Select(_ => random.Next(Series))];
        _values = [.. Enumerable.Range(0, 1 << 16).Select(_ => random.NextDouble())];
    }

    [Benchmark(Baseline = true, OperationsPerInvoke = Calls)]
    public void OpenTelemetryHistogramRecord()
    {
        int n = _next;
        for (int k = 0; k < Calls; k++, n = (n + 1) & 0xFFFF)
        {
            _otelHistogram.Record(_values[n], _tags[_visit[n]]);
        }

        _next = n;
    }

    [Benchmark(OperationsPerInvoke = Calls)]
    public void EngineHistogramWithLabels()
    {
        int n = _next;
        for (int k = 0; k < Calls; k++, n = (n + 1) & 0xFFFF)
        {
            _histogram.Record(_values[n], _labelValues[_visit[n]]);
        }

        _next = n;
    }

    [Benchmark(OperationsPerInvoke = Calls)]
    public void EngineBoundHandle()
    {
        int n = _next;
        for (int k = 0; k < Calls; k++, n = (n + 1) & 0xFFFF)
        {
            _handles[_visit[n]].Record(_values[n]);
        }

        _next = n;
    }

    [Benchmark(OperationsPerInvoke = Calls)]
    public void MeterBridgeHistogramRecord()
    {
        int n = _next;
        for (int k = 0; k < Calls; k++, n = (n + 1) & 0xFFFF)
        {
            _bridgedHistogram.Record(_values[n], _tags[_visit[n]]);
        }

        _next = n;
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        PipelineMetrics m = _pipeline.GetMetrics();
        Console.WriteLine($"// engine: {m.Offered} offered, {m.Accepted} accepted, {m.Dropped} dropped (DropNewest when the shards fall behind)");
        _bridge.Dispose();
        _bridgedMeter.Dispose();
        _collector.Dispose();
        _pipeline.DisposeAsync().AsTask().GetAwaiter().GetResult();
        _otelMeter.Dispose();
        _otelProvider.Dispose();
    }
}
