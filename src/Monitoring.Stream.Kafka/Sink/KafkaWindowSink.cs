using System.Globalization;
using System.Text;
using Apache.Arrow;
using Apache.Arrow.Ipc;
using Confluent.Kafka;
using Monitoring.Stream.Arrow;
using Monitoring.Stream.Sinks;

namespace Monitoring.Stream.Kafka.Sink;

/// <summary>
/// Sends each closed window batch to a topic as one Arrow IPC stream (one message per batch), with a key of
/// instance, shard and window, and headers a consumer finds and merges windows by. Idempotent producer;
/// <see cref="WriteAsync"/> returns once the brokers acknowledged the message, so the pipeline's
/// acknowledgements (and the offsets committed from them) mean durable in Kafka.
/// </summary>
public sealed class KafkaWindowSink : IWindowSink
{
    private int _disposed;
    private readonly KafkaWindowSinkOptions _options;
    private readonly IProducer<byte[], byte[]> _producer;
    private readonly MemoryStream _buffer = new();
    private long _delivered, _bytes, _deliveryFailures, _queueFullWaits;
    private string? _lastError;

    /// <summary>Creates the sink and its producer.</summary>
    public KafkaWindowSink(KafkaWindowSinkOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentException.ThrowIfNullOrWhiteSpace(options.BootstrapServers);
        ArgumentException.ThrowIfNullOrWhiteSpace(options.Topic);
        _options = options;
        var config = new ProducerConfig
        {
            BootstrapServers = options.BootstrapServers,
            EnableIdempotence = true,
            Acks = Acks.All,
            LingerMs = 5,
            MessageTimeoutMs = (int)options.DeliveryTimeout.TotalMilliseconds,
            MessageMaxBytes = 64 << 20,
        };
        foreach ((string key, string value) in options.ClientSettings)
        {
            config.Set(key, value);
        }

        _producer = new ProducerBuilder<byte[], byte[]>(config).SetLogHandler(static (_, _) => { }).Build();
    }

    /// <inheritdoc />
    public string Name => "kafka:" + _options.Topic;

    /// <summary>Messages the brokers acknowledged.</summary>
    public long Delivered => Interlocked.Read(ref _delivered);

    /// <summary>Value bytes the brokers acknowledged.</summary>
    public long BytesDelivered => Interlocked.Read(ref _bytes);

    /// <summary>Messages librdkafka gave up on after its retries (each is retried again by the pipeline's sink runner).</summary>
    public long DeliveryFailures => Interlocked.Read(ref _deliveryFailures);

    /// <summary>Times a produce found librdkafka's queue full and waited.</summary>
    public long QueueFullWaits => Interlocked.Read(ref _queueFullWaits);

    /// <summary>The last delivery error, if any.</summary>
    public string? LastError => Volatile.Read(ref _lastError);

    /// <summary>The message key of a window batch: its <see cref="WindowBatch.BatchId"/>, <c>instance/shard/window start ms/sequence</c>.</summary>
    public static string KeyOf(WindowBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        return batch.BatchId;
    }

    /// <inheritdoc />
    public async ValueTask WriteAsync(WindowBatch batch, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batch);
        byte[] value = Serialize(batch);
        var message = new Message<byte[], byte[]>
        {
            Key = Encoding.UTF8.GetBytes(KeyOf(batch)),
            Value = value,
            Headers = new Headers
            {
                { AggregateHeaders.SchemaVersion, Encoding.UTF8.GetBytes(WindowSchema.Version) },
                { AggregateHeaders.WindowStart, Text(batch.WindowStartUnixMs) },
                { AggregateHeaders.WindowEnd, Text(batch.WindowEndUnixMs) },
                { AggregateHeaders.Shard, Text(batch.Shard) },
                { AggregateHeaders.Instance, Encoding.UTF8.GetBytes(batch.Instance) },
                { AggregateHeaders.Sequence, Text(batch.Sequence) },
                { AggregateHeaders.Points, Text(batch.Points) },
            },
        };

        // Read now, while the batch is not yet acknowledged: its points lie at or above the committed offsets (docs/kafka.md).
        if (_options.SourceOffsets?.Invoke(batch) is { Length: > 0 } offsets)
        {
            message.Headers.Add(AggregateHeaders.SourceOffsets, Encoding.UTF8.GetBytes(offsets));
        }
        var delivered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        void OnDelivery(DeliveryReport<byte[], byte[]> report)
        {
            if (report.Error.IsError)
            {
                Interlocked.Increment(ref _deliveryFailures);
                Volatile.Write(ref _lastError, report.Error.ToString());
                delivered.TrySetException(new KafkaException(report.Error));
            }
            else
            {
                Interlocked.Increment(ref _delivered);
                Interlocked.Add(ref _bytes, value.Length);
                delivered.TrySetResult();
            }
        }

        while (true)
        {
            try
            {
                _producer.Produce(_options.Topic, message, OnDelivery);
                break;
            }
            catch (ProduceException<byte[], byte[]> e) when (e.Error.Code == ErrorCode.Local_QueueFull)
            {
                Interlocked.Increment(ref _queueFullWaits);
                cancellationToken.ThrowIfCancellationRequested();
                _producer.Poll(TimeSpan.FromMilliseconds(100));
            }
        }

        await delivered.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    private byte[] Serialize(WindowBatch batch)
    {
        // The batch's schema metadata already names its window, shard, sequence and instance (docs/arrow-schema.md).
        RecordBatch records = batch.RecordBatch;
        _buffer.SetLength(0);
        using (var writer = new ArrowStreamWriter(_buffer, records.Schema, leaveOpen: true))
        {
            writer.WriteRecordBatch(records);
            writer.WriteEnd();
        }

        return _buffer.ToArray();
    }

    private static byte[] Text(long value) => Encoding.UTF8.GetBytes(value.ToString(CultureInfo.InvariantCulture));

    /// <inheritdoc />
    public ValueTask CompleteAsync(CancellationToken cancellationToken)
    {
        _producer.Flush(cancellationToken);
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc />
    public ValueTask DisposeAsync()
    {
        // Idempotent: a host and the pipeline may both dispose the sink, and a second Flush on a
        // disposed librdkafka handle would throw.
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return ValueTask.CompletedTask;
        }

        _producer.Flush(TimeSpan.FromSeconds(5));
        _producer.Dispose();
        _buffer.Dispose();
        return ValueTask.CompletedTask;
    }
}
