using System.Buffers;
using System.Text;
using Confluent.Kafka;
using Monitoring.Stream.Kafka.WireFormat;
using Monitoring.Stream.Model;

namespace Monitoring.Stream.Kafka.Producer;

/// <summary>
/// Writes points to a Kafka topic in the point wire format (docs/wire-format.md): one batch per partition,
/// sent as one message when it holds <see cref="PointProducerOptions.MaxPointsPerMessage"/> points, reaches
/// <see cref="PointProducerOptions.MaxMessageBytes"/>, or has waited <see cref="PointProducerOptions.Linger"/>.
/// </summary>
/// <remarks>
/// <para>
/// A series always goes to the same partition: the partition is a stable hash (FNV-1a, 32 bits) of the metric
/// name and the labels sorted by name, modulo the partition count, so one engine instance aggregates all of it.
/// The messages carry that partition explicitly and no key (a message holds many series).
/// </para>
/// <para>
/// Delivery: librdkafka's idempotent producer (<c>enable.idempotence=true</c>, <c>acks=all</c>), one
/// <c>Produce</c> with a delivery handler per message, never an awaited send per point. A message that
/// librdkafka cannot deliver within <c>message.timeout.ms</c> is counted with its points in
/// <see cref="PointProducerMetrics.DeliveryFailures"/> and <see cref="PointProducerMetrics.PointsFailed"/>.
/// </para>
/// <para>
/// <see cref="Flush"/> sends every batch and waits for the deliveries; <see cref="Dispose"/> does the same,
/// bounded by <see cref="PointProducerOptions.DisposeTimeout"/>, then closes the client: messages still
/// undelivered then are lost, so a caller that must know calls <see cref="Flush"/> first and checks its result.
/// </para>
/// <para>
/// Thread-safe: every member may be called from any thread. Adds take one uncontended lock per point; a
/// service that adds from many threads at high rates gives each thread its own producer.
/// </para>
/// </remarks>
public sealed class PointProducer : IDisposable
{
    // Worst-case MessagePack sizes: a point is a series index (int32: 5 bytes), a delta (int64: 9) and a float64 (9).
    private const int PointBytes = 5 + 9 + 9;
    private const int MessageOverheadBytes = 1 + 1 + 9 + (3 * 5);

    private readonly PointProducerOptions _options;
    private readonly IProducer<Null, byte[]> _producer;
    private readonly Lock _gate = new();
    private readonly PartitionBatch[] _batches;
    private readonly ArrayBufferWriter<byte> _buffer = new(64 * 1024);
    private readonly ITimer _linger;
    private long _pointsAdded, _messagesProduced, _queueFullWaits;
    private long _pointsDelivered, _messagesDelivered, _bytesDelivered, _deliveryFailures, _pointsFailed;
    private string? _lastError;
    private bool _disposed;

    /// <summary>Connects a producer for <see cref="PointProducerOptions.Topic"/> (reading its partition count unless given).</summary>
    public PointProducer(PointProducerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _options = options;
        var config = new ProducerConfig
        {
            BootstrapServers = options.BootstrapServers,
            EnableIdempotence = true,
            Acks = Acks.All,
            LingerMs = 5,
            MessageMaxBytes = Math.Max(options.MaxMessageBytes + 65536, 1024 * 1024),
        };
        foreach ((string key, string value) in options.ClientSettings)
        {
            config.Set(key, value);
        }

        _producer = new ProducerBuilder<Null, byte[]>(config).SetLogHandler(static (_, _) => { }).Build();
        try
        {
            Partitions = options.Partitions ?? ReadPartitionCount(_producer, options.Topic);
        }
        catch
        {
            _producer.Dispose();
            throw;
        }

        _batches = new PartitionBatch[Partitions];
        for (int p = 0; p < _batches.Length; p++)
        {
            _batches[p] = new PartitionBatch(new TopicPartition(options.Topic, p));
        }

        TimeSpan period = TimeSpan.FromTicks(Math.Max(options.Linger.Ticks / 2, TimeSpan.TicksPerMillisecond));
        _linger = options.TimeProvider.CreateTimer(static state => ((PointProducer)state!).OnLingerTick(), this, period, period);
    }

    /// <summary>The topic's partition count the series are spread over.</summary>
    public int Partitions { get; }

    /// <summary>Resolves a series once: its labels sorted (empty values dropped) and its partition computed.</summary>
    public ProducerSeries GetSeries(string metric, ReadOnlySpan<Label> labels)
    {
        ArgumentException.ThrowIfNullOrEmpty(metric);
        var sorted = new List<Label>(labels.Length);
        foreach (Label label in labels)
        {
            ArgumentException.ThrowIfNullOrEmpty(label.Name, nameof(labels));
            if (!string.IsNullOrEmpty(label.Value))
            {
                sorted.Add(label);
            }
        }

        sorted.Sort(static (a, b) => string.CompareOrdinal(a.Name, b.Name));
        Label[] array = [.. sorted];
        return new ProducerSeries(this, metric, array, PartitionOf(metric, array, Partitions));
    }

    /// <summary>The partition of a series among <paramref name="partitions"/>: FNV-1a of the metric and the sorted labels' UTF-8 bytes, each followed by a zero byte.</summary>
    public static int PartitionOf(string metric, ReadOnlySpan<Label> sortedLabels, int partitions)
    {
        ArgumentNullException.ThrowIfNull(metric);
        ArgumentOutOfRangeException.ThrowIfLessThan(partitions, 1);
        uint hash = 2166136261;
        hash = Hash(hash, metric);
        foreach (Label label in sortedLabels)
        {
            hash = Hash(Hash(hash, label.Name), label.Value);
        }

        return (int)(hash % (uint)partitions);
    }

    /// <summary>Adds a point of a series resolved by <see cref="GetSeries"/>; allocates nothing unless the batch is sent.</summary>
    public void Add(ProducerSeries series, double value, long timestampUnixMs)
    {
        ArgumentNullException.ThrowIfNull(series);
        if (!ReferenceEquals(series.Owner, this))
        {
            throw new ArgumentException("The series belongs to another producer.", nameof(series));
        }

        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            PartitionBatch batch = _batches[series.Partition];
            if (series.BatchGeneration != batch.Generation)
            {
                series.BatchIndex = batch.Encoder.AddSeries(series.Metric, series.LabelArray);
                series.BatchGeneration = batch.Generation;
                batch.EstimatedBytes += EstimateBytes(series);
            }

            if (batch.Encoder.Count == 0)
            {
                batch.FirstAdded = _options.TimeProvider.GetTimestamp();
            }

            batch.Encoder.Add(series.BatchIndex, value, timestampUnixMs);
            batch.EstimatedBytes += PointBytes;
            _pointsAdded++;
            if (batch.Encoder.Count >= _options.MaxPointsPerMessage || batch.EstimatedBytes + PointBytes > _options.MaxMessageBytes)
            {
                Send(batch);
            }
        }
    }

    /// <summary>Adds a point, resolving its series on every call (allocates; hold a <see cref="ProducerSeries"/> on hot paths).</summary>
    public void Add(string metric, ReadOnlySpan<Label> labels, double value, long timestampUnixMs) =>
        Add(GetSeries(metric, labels), value, timestampUnixMs);

    /// <summary>
    /// Sends every batch now and waits, at most <paramref name="timeout"/>, until librdkafka has delivered or
    /// failed every message; returns the number of messages still outstanding (0: all settled).
    /// </summary>
    public int Flush(TimeSpan timeout)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            SendAll();
        }

        return _producer.Flush(timeout);
    }

    /// <summary>A snapshot of the producer's counters.</summary>
    public PointProducerMetrics GetMetrics()
    {
        lock (_gate)
        {
            long buffered = 0;
            foreach (PartitionBatch batch in _batches)
            {
                buffered += batch.Encoder.Count;
            }

            return new PointProducerMetrics
            {
                PointsAdded = _pointsAdded,
                MessagesProduced = _messagesProduced,
                QueueFullWaits = _queueFullWaits,
                PointsBuffered = buffered,
                PointsDelivered = Interlocked.Read(ref _pointsDelivered),
                MessagesDelivered = Interlocked.Read(ref _messagesDelivered),
                BytesDelivered = Interlocked.Read(ref _bytesDelivered),
                DeliveryFailures = Interlocked.Read(ref _deliveryFailures),
                PointsFailed = Interlocked.Read(ref _pointsFailed),
                LastError = Volatile.Read(ref _lastError),
            };
        }
    }

    /// <summary>Sends every batch, waits at most <see cref="PointProducerOptions.DisposeTimeout"/> for the deliveries, and closes the client.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            SendAll();
        }

        _linger.Dispose();
        _producer.Flush(_options.DisposeTimeout);
        _producer.Dispose();
    }

    private static int ReadPartitionCount(IProducer<Null, byte[]> producer, string topic)
    {
        using IAdminClient admin = new DependentAdminClientBuilder(producer.Handle).Build();
        Metadata metadata = admin.GetMetadata(topic, TimeSpan.FromSeconds(10));
        TopicMetadata? found = metadata.Topics.SingleOrDefault(t => t.Topic == topic);
        if (found is null || found.Error.IsError || found.Partitions.Count == 0)
        {
            throw new InvalidOperationException($"Topic '{topic}' has no partitions in the cluster's metadata ({found?.Error.ToString() ?? "absent"}); set PointProducerOptions.Partitions or create the topic.");
        }

        return found.Partitions.Count;
    }

    private static uint Hash(uint hash, string text)
    {
        Span<byte> buffer = stackalloc byte[256];
        int max = Encoding.UTF8.GetMaxByteCount(text.Length);
        byte[]? rented = max > buffer.Length ? ArrayPool<byte>.Shared.Rent(max) : null;
        try
        {
            Span<byte> bytes = rented ?? buffer;
            int length = Encoding.UTF8.GetBytes(text, bytes);
            foreach (byte b in bytes[..length])
            {
                hash = (hash ^ b) * 16777619;
            }

            return hash * 16777619; // the zero byte that ends each string
        }
        finally
        {
            if (rented is not null)
            {
                ArrayPool<byte>.Shared.Return(rented);
            }
        }
    }

    private static int EstimateBytes(ProducerSeries series)
    {
        // Strings may repeat across series and are counted each time: an over-estimate, never an under-estimate.
        int bytes = 5 + (5 * (1 + (2 * series.LabelArray.Length))) + 5 + Encoding.UTF8.GetByteCount(series.Metric);
        foreach (Label label in series.LabelArray)
        {
            bytes += 10 + Encoding.UTF8.GetByteCount(label.Name) + Encoding.UTF8.GetByteCount(label.Value);
        }

        return bytes;
    }

    private void OnLingerTick()
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            foreach (PartitionBatch batch in _batches)
            {
                if (batch.Encoder.Count > 0 && _options.TimeProvider.GetElapsedTime(batch.FirstAdded) >= _options.Linger)
                {
                    Send(batch);
                }
            }
        }
    }

    private void SendAll()
    {
        foreach (PartitionBatch batch in _batches)
        {
            if (batch.Encoder.Count > 0)
            {
                Send(batch);
            }
        }
    }

    // Under _gate. Encodes the batch into one message and hands it to librdkafka; waits while its queue is full.
    private void Send(PartitionBatch batch)
    {
        _buffer.ResetWrittenCount();
        batch.Encoder.WriteTo(_buffer);
        int points = batch.Encoder.Count;
        var message = new Message<Null, byte[]> { Value = _buffer.WrittenSpan.ToArray() };
        batch.Encoder.Clear();
        batch.Generation++;
        batch.EstimatedBytes = MessageOverheadBytes;
        while (true)
        {
            try
            {
                _producer.Produce(batch.Target, message, report => OnDelivered(report, points));
                _messagesProduced++;
                return;
            }
            catch (ProduceException<Null, byte[]> e) when (e.Error.Code == ErrorCode.Local_QueueFull)
            {
                _queueFullWaits++;
                _producer.Poll(TimeSpan.FromMilliseconds(100));
            }
            catch (ProduceException<Null, byte[]> e)
            {
                // Refused before it was queued (too large, unknown partition, fatal): the points are lost; count them.
                RecordFailure(e.Error, points);
                return;
            }
        }
    }

    private void OnDelivered(DeliveryReport<Null, byte[]> report, int points)
    {
        if (report.Error.IsError)
        {
            RecordFailure(report.Error, points);
            return;
        }

        Interlocked.Increment(ref _messagesDelivered);
        Interlocked.Add(ref _pointsDelivered, points);
        Interlocked.Add(ref _bytesDelivered, report.Message.Value.Length);
    }

    private void RecordFailure(Error error, int points)
    {
        Interlocked.Increment(ref _deliveryFailures);
        Interlocked.Add(ref _pointsFailed, points);
        Volatile.Write(ref _lastError, error.ToString());
    }

    private sealed class PartitionBatch(TopicPartition target)
    {
        public TopicPartition Target { get; } = target;

        public PointBatchEncoder Encoder { get; } = new();

        public long Generation { get; set; }

        public long FirstAdded { get; set; }

        public long EstimatedBytes { get; set; } = MessageOverheadBytes;
    }
}
