using System.Collections.Concurrent;
using Confluent.Kafka;
using Monitoring.Stream.Kafka.Aggregates;
using Monitoring.Stream.Kafka.WireFormat;
using Monitoring.Stream.Model;

namespace Monitoring.Stream.Server.Tests.Support;

/// <summary>
/// A known load for the crash test, written with a plain Confluent producer: rounds of one message per partition,
/// each message <see cref="PointsPerSeries"/> points of each of the partition's <see cref="SeriesPerPartition"/>
/// series (value 1), stamped in the past and advancing 100 ms of event time a round. Every delivered
/// message's partition and offset is recorded, so a test knows exactly which points lie beyond any offset.
/// </summary>
internal sealed class PacedPointLoad : IDisposable
{
    public const string Metric = "crash_points";
    public const int SeriesPerPartition = 10;
    public const int PointsPerSeries = 50;
    public const int PointsPerMessage = SeriesPerPartition * PointsPerSeries;

    private readonly IProducer<Null, byte[]> _producer;
    private readonly string _topic;
    private readonly int _partitions;
    private readonly long _firstTimestamp;
    private readonly ConcurrentDictionary<int, long> _delivered = new();
    private readonly ConcurrentQueue<string> _errors = new();
    private int _rounds;

    public PacedPointLoad(string bootstrap, string topic, int partitions, long firstTimestampUnixMs)
    {
        _topic = topic;
        _partitions = partitions;
        _firstTimestamp = firstTimestampUnixMs;
        _producer = new ProducerBuilder<Null, byte[]>(new ProducerConfig
        {
            BootstrapServers = bootstrap,
            EnableIdempotence = true,
            Acks = Acks.All,
            LingerMs = 0,
        }).SetLogHandler(static (_, _) => { }).Build();
    }

    /// <summary>Rounds produced so far (every partition got one message a round).</summary>
    public int Rounds => Volatile.Read(ref _rounds);

    /// <summary>Delivery errors (a test fails on any).</summary>
    public IReadOnlyCollection<string> Errors => _errors;

    /// <summary>The series of a partition's <paramref name="index"/>th series (a label names both).</summary>
    public static string SeriesKey(int partition, int index) => AggregateRow.SeriesKeyOf(Metric, [new Label("series", $"p{partition}-s{index}")]);

    /// <summary>Produces one round (one message to each partition) without waiting for the deliveries.</summary>
    public void ProduceRound()
    {
        int round = _rounds;
        long roundStart = _firstTimestamp + (round * 100L);
        for (int p = 0; p < _partitions; p++)
        {
            var encoder = new PointBatchEncoder();
            for (int s = 0; s < SeriesPerPartition; s++)
            {
                int id = encoder.AddSeries(Metric, [new Label("series", $"p{p}-s{s}")]);
                for (int i = 0; i < PointsPerSeries; i++)
                {
                    encoder.Add(id, 1.0, roundStart + (i * 2));
                }
            }

            int partition = p;
            _producer.Produce(new TopicPartition(_topic, partition), new Message<Null, byte[]> { Value = encoder.ToArray() }, report =>
            {
                if (report.Error.IsError)
                {
                    _errors.Enqueue(report.Error.ToString());
                }
                else
                {
                    _delivered.AddOrUpdate(partition, report.Offset.Value + 1, (_, old) => Math.Max(old, report.Offset.Value + 1));
                }
            });
        }

        Volatile.Write(ref _rounds, round + 1);
    }

    /// <summary>Waits for every delivery; fails when some are still outstanding after <paramref name="timeout"/>.</summary>
    public void Flush(TimeSpan timeout) => Assert.Equal(0, _producer.Flush(timeout));

    /// <summary>Per partition, one past the last delivered offset (the partition's end, as far as this load knows).</summary>
    public long[] DeliveredEnds() => [.. Enumerable.Range(0, _partitions).Select(p => _delivered.GetValueOrDefault(p))];

    /// <summary>The exact number of points of each series after every round so far has been delivered.</summary>
    public Dictionary<string, long> ExpectedCounts() => Enumerable.Range(0, _partitions)
        .SelectMany(p => Enumerable.Range(0, SeriesPerPartition).Select(s => SeriesKey(p, s)))
        .ToDictionary(k => k, _ => (long)Rounds * PointsPerSeries, StringComparer.Ordinal);

    public void Dispose() => _producer.Dispose();
}
