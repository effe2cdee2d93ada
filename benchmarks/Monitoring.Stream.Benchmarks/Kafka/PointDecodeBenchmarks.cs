using BenchmarkDotNet.Attributes;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Kafka.WireFormat;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;

namespace Monitoring.Stream.Benchmarks.Kafka;

/// <summary>
/// Decoding in-memory point messages (docs/wire-format.md) of known series into a running pipeline, per point.
/// The baseline parses and checks the message without writing it, so the ratio shows what the writer adds.
/// </summary>
[MemoryDiagnoser]
[MinColumn]
public class PointDecodeBenchmarks
{
    private const int Messages = 100;
    private MetricsPipeline _pipeline = null!;
    private PointWriter _writer = null!;
    private PointBatchDecoder _decoder = null!;
    private byte[] _message = [];
    private byte[][] _cycled = [];
    private SeriesId[] _ids = [];
    private double[] _values = [];
    private long[] _timestamps = [];

    [Params(1_000)]
    public int PointsPerMessage { get; set; }

    [Params(100)]
    public int SeriesPerMessage { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _pipeline = new MetricsPipeline(new MetricsPipelineOptions { ShardCount = 1, Sketches = true }, []);
        _pipeline.Start();
        _writer = _pipeline.CreateWriter("bench", BackpressureMode.Wait);
        _decoder = new PointBatchDecoder(_pipeline.Registry);
        var encoder = new PointBatchEncoder();
        long now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        for (int i = 0; i < PointsPerMessage; i++)
        {
            int s = i % SeriesPerMessage;
            encoder.Add("http_server_request_duration_seconds", [new("route", "/api/" + s), new("method", "GET"), new("status", "200")], 0.001 * (i % 977), now + (i % 1000));
        }

        _message = encoder.ToArray();
        _ids = new SeriesId[PointsPerMessage];
        _values = new double[PointsPerMessage];
        _timestamps = new long[PointsPerMessage];
        for (int i = 0; i < PointsPerMessage; i++)
        {
            int s = i % SeriesPerMessage;
            _pipeline.Registry.TryGetOrAdd("http_server_request_duration_seconds", [new("method", "GET"), new("route", "/api/" + s), new("status", "200")], out _ids[i]);
            _values[i] = 0.001 * (i % 977);
            _timestamps[i] = now + (i % 1000);
        }

        _decoder.Decode(_message, _writer);

        // Ten messages of other series each (1,000 known series in all), cycled: no two consecutive tables alike.
        _cycled = new byte[10][];
        for (int g = 0; g < _cycled.Length; g++)
        {
            encoder.Clear();
            for (int i = 0; i < PointsPerMessage; i++)
            {
                int s = (g * SeriesPerMessage) + (i % SeriesPerMessage);
                encoder.Add("http_server_request_duration_seconds", [new("route", "/api/" + s), new("method", "GET"), new("status", "200")], 0.001 * (i % 977), now + (i % 1000));
            }

            _cycled[g] = encoder.ToArray();
            _decoder.Decode(_cycled[g], _writer);
        }
    }

    [Benchmark(Baseline = true, OperationsPerInvoke = Messages * 1_000)]
    public int ParseOnly()
    {
        int points = 0;
        for (int m = 0; m < Messages; m++)
        {
            points += _decoder.Validate(_message).Points;
        }

        return points;
    }

    [Benchmark(OperationsPerInvoke = Messages * 1_000)]
    public int DecodeIntoPipeline()
    {
        int points = 0;
        for (int m = 0; m < Messages; m++)
        {
            points += _decoder.Decode(_message, _writer).Points;
        }

        return points;
    }

    /// <summary>Decoding into the pipeline messages whose series tables differ from one message to the next (series all known).</summary>
    [Benchmark(OperationsPerInvoke = Messages * 1_000)]
    public int DecodeVaryingTablesIntoPipeline()
    {
        int points = 0;
        for (int m = 0; m < Messages; m++)
        {
            points += _decoder.Decode(_cycled[m % _cycled.Length], _writer).Points;
        }

        return points;
    }

    /// <summary>The same points written by id straight into the pipeline, no decoding: what the core's writer and shard cost.</summary>
    [Benchmark(OperationsPerInvoke = Messages * 1_000)]
    public int WriteOnly()
    {
        int refused = 0;
        for (int m = 0; m < Messages; m++)
        {
            for (int i = 0; i < _ids.Length; i++)
            {
                if (_writer.Write(_ids[i], _values[i], _timestamps[i]) != RejectReason.None)
                {
                    refused++;
                }
            }
        }

        return refused;
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _writer.Dispose();
        _pipeline.StopAsync().GetAwaiter().GetResult();
    }
}
