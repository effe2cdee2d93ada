using Apache.Arrow;
using BenchmarkDotNet.Attributes;
using Monitoring.Stream.Arrow;
using Monitoring.Stream.Model;
using Monitoring.Stream.Prometheus;
using Monitoring.Stream.Series;
using Monitoring.Stream.Windows;
using Snappier;

namespace Monitoring.Stream.Benchmarks.Micro;

/// <summary>
/// One closed window of <see cref="Series"/> latency series (20 points each) as the remote-write sink sends it —
/// encoded into WriteRequests (11 samples per series) and snappy-compressed — beside building the same window as
/// an Arrow record batch, which every sink receives. Samples per second = 11 x Series / mean time.
/// </summary>
[MemoryDiagnoser]
public class RemoteWriteBenchmarks
{
    private const string Metric = "http_server_request_duration_seconds";
    private WindowBuffer _window = null!;
    private ArrowWindowWriter _arrow = null!;
    private RecordBatch _batch = null!;
    private RemoteWriteEncoder _encoder = null!;
    private long _bytes;
    private long _requests;
    private readonly List<byte[]> _uncompressed = [];
    private byte[] _scratch = [];
    private bool _capture = true;

    /// <summary>Series in the window.</summary>
    [Params(100_000)]
    public int Series { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var registry = new SeriesRegistry();
        _window = new WindowBuffer(Series + 1, withSketches: true, 0.01, 2048) { Start = 1_795_000_000_000, End = 1_795_000_010_000 };
        var random = new Random(1);
        for (int i = 0; i < Series; i++)
        {
            Label[] labels = [new("method", i % 2 == 0 ? "GET" : "POST"), new("route", "/api/v1/items/" + (i / 4)), new("status", (i % 4) switch { 0 => "200", 1 => "404", 2 => "500", _ => "503" })];
            int id = registry.GetOrAdd(Metric, labels).Value;
            for (int k = 0; k < 20; k++)
            {
                _window.Add(id, 0.02 * Math.Exp(random.NextDouble() * 2), _window.Start + k);
            }
        }

        _arrow = new ArrowWindowWriter(registry, 1, WindowSchema.Create("bench"));
        _batch = _arrow.Build(_window, 0, 1);
        _encoder = new RemoteWriteEncoder(4, 1 << 20, 1_000_000, TimeSpan.FromMinutes(15), r =>
        {
            _bytes += r.Body.Length;
            _requests++;
            if (_capture)
            {
                _uncompressed.Add(Snappy.DecompressToArray(r.Body));
            }
        });
        long samples = _encoder.Encode(_batch, _window.End, "bench");
        _capture = false;
        _scratch = new byte[Snappy.GetMaxCompressedLength(_uncompressed.Max(u => u.Length))];
        Console.WriteLine($"// remote write of {Series:N0} series: {samples:N0} samples in {_requests} requests, {_uncompressed.Sum(u => (long)u.Length):N0} bytes " +
            $"uncompressed, {_bytes:N0} compressed = {_bytes / (double)samples:F2} bytes/sample");
    }

    [GlobalCleanup]
    public void Cleanup() => _batch.Dispose();

    /// <summary>Building the window's Arrow batch, which the pipeline does once for every sink.</summary>
    [Benchmark(Baseline = true)]
    public int BuildArrow()
    {
        using RecordBatch batch = _arrow.Build(_window, 0, 1);
        return batch.Length;
    }

    /// <summary>Encoding the window into snappy-compressed remote-write requests (the sink's work in WriteAsync).</summary>
    [Benchmark]
    public long EncodeAndCompress() => _encoder.Encode(_batch, _window.End, "bench");

    /// <summary>Only the snappy compression of the same window's requests, to show its share of the sink's work.</summary>
    [Benchmark]
    public long CompressOnly()
    {
        long bytes = 0;
        foreach (byte[] request in _uncompressed)
        {
            bytes += Snappy.Compress(request, _scratch);
        }

        return bytes;
    }
}
