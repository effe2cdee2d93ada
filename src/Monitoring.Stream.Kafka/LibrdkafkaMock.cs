using System.Diagnostics;
using System.Runtime.InteropServices;
using Confluent.Kafka;

namespace Monitoring.Stream.Kafka;

/// <summary>
/// librdkafka's mock cluster API (rdkafka_mock.h), which Confluent.Kafka does not wrap: called through the
/// exports of the native library Confluent.Kafka itself loaded, so both speak to the same mock cluster.
/// </summary>
/// <remarks>
/// The owner's native handle is read from Confluent.Kafka's internal <c>Handle.LibrdkafkaHandle</c>. Signatures (librdkafka's rdkafka_mock.h): <c>rd_kafka_mock_cluster_t *rd_kafka_handle_mock_cluster(const rd_kafka_t *rk)</c>;
/// <c>rd_kafka_resp_err_t rd_kafka_mock_broker_set_down(rd_kafka_mock_cluster_t *mcluster, int32_t broker_id)</c> and
/// <c>_set_up</c> alike; <c>rd_kafka_mock_partition_set_leader(mcluster, const char *topic, int32_t partition, int32_t broker_id)</c>;
/// <c>rd_kafka_mock_coordinator_set(mcluster, const char *key_type, const char *key, int32_t broker_id)</c>.
/// Confluent.Kafka loads whichever of its bundled variants works on the machine (on Debian the
/// <c>centos8-librdkafka.so</c> one), so the file is found among the process's loaded modules, not by name.
/// </remarks>
internal static unsafe class LibrdkafkaMock
{
    private static readonly Lazy<Exports> s_exports = new(Load);

    // Confluent.Kafka keeps the client's rd_kafka_t* in an internal property of Handle (2.16.0); read by
    // reflection because nothing public exposes it. A later version that renames it fails here, loudly.
    private static readonly System.Reflection.PropertyInfo s_librdkafkaHandle =
        typeof(Handle).GetProperty("LibrdkafkaHandle", System.Reflection.BindingFlags.Instance | System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Public)
        ?? throw new InvalidOperationException("Confluent.Kafka.Handle.LibrdkafkaHandle not found: the mock cluster API needs the version in Directory.Packages.props.");

    public static IntPtr MockCluster(Handle owner)
    {
        ArgumentNullException.ThrowIfNull(owner);
        SafeHandle handle = s_librdkafkaHandle.GetValue(owner) as SafeHandle
            ?? throw new InvalidOperationException("Confluent.Kafka's Handle has no native handle.");
        bool added = false;
        try
        {
            handle.DangerousAddRef(ref added);
            IntPtr cluster = s_exports.Value.HandleMockCluster(handle.DangerousGetHandle());
            return cluster != IntPtr.Zero ? cluster : throw new InvalidOperationException("The client owns no mock cluster (test.mock.num.brokers not set).");
        }
        finally
        {
            if (added)
            {
                handle.DangerousRelease();
            }
        }
    }

    public static void BrokerSetDown(IntPtr cluster, int brokerId) => Check(s_exports.Value.BrokerSetDown(cluster, brokerId), "broker_set_down");

    public static void BrokerSetUp(IntPtr cluster, int brokerId) => Check(s_exports.Value.BrokerSetUp(cluster, brokerId), "broker_set_up");

    public static void PartitionSetLeader(IntPtr cluster, string topic, int partition, int brokerId)
    {
        IntPtr name = Marshal.StringToCoTaskMemUTF8(topic);
        try
        {
            Check(s_exports.Value.PartitionSetLeader(cluster, name, partition, brokerId), "partition_set_leader");
        }
        finally
        {
            Marshal.FreeCoTaskMem(name);
        }
    }

    public static void CoordinatorSet(IntPtr cluster, string keyType, string key, int brokerId)
    {
        IntPtr type = Marshal.StringToCoTaskMemUTF8(keyType);
        IntPtr name = Marshal.StringToCoTaskMemUTF8(key);
        try
        {
            Check(s_exports.Value.CoordinatorSet(cluster, type, name, brokerId), "coordinator_set");
        }
        finally
        {
            Marshal.FreeCoTaskMem(type);
            Marshal.FreeCoTaskMem(name);
        }
    }

    private static void Check(int error, string call)
    {
        if (error != 0)
        {
            throw new KafkaException(new Error((ErrorCode)error, "rd_kafka_mock_" + call));
        }
    }

    private static Exports Load()
    {
        // Make sure Confluent.Kafka has loaded its native library, then find that very file.
        _ = Library.Version;
        string? path = null;
        using (var process = Process.GetCurrentProcess())
        {
            foreach (ProcessModule module in process.Modules)
            {
                if (module.ModuleName.Contains("rdkafka", StringComparison.OrdinalIgnoreCase))
                {
                    path = module.FileName;
                    break;
                }
            }
        }

        IntPtr library = path is not null ? NativeLibrary.Load(path) : throw new InvalidOperationException("librdkafka is not among the loaded modules.");
        return new Exports(
            (delegate* unmanaged[Cdecl]<IntPtr, IntPtr>)NativeLibrary.GetExport(library, "rd_kafka_handle_mock_cluster"),
            (delegate* unmanaged[Cdecl]<IntPtr, int, int>)NativeLibrary.GetExport(library, "rd_kafka_mock_broker_set_down"),
            (delegate* unmanaged[Cdecl]<IntPtr, int, int>)NativeLibrary.GetExport(library, "rd_kafka_mock_broker_set_up"),
            (delegate* unmanaged[Cdecl]<IntPtr, IntPtr, int, int, int>)NativeLibrary.GetExport(library, "rd_kafka_mock_partition_set_leader"),
            (delegate* unmanaged[Cdecl]<IntPtr, IntPtr, IntPtr, int, int>)NativeLibrary.GetExport(library, "rd_kafka_mock_coordinator_set"));
    }

    private sealed class Exports(
        delegate* unmanaged[Cdecl]<IntPtr, IntPtr> handleMockCluster,
        delegate* unmanaged[Cdecl]<IntPtr, int, int> brokerSetDown,
        delegate* unmanaged[Cdecl]<IntPtr, int, int> brokerSetUp,
        delegate* unmanaged[Cdecl]<IntPtr, IntPtr, int, int, int> partitionSetLeader,
        delegate* unmanaged[Cdecl]<IntPtr, IntPtr, IntPtr, int, int> coordinatorSet)
    {
        public IntPtr HandleMockCluster(IntPtr rk) => handleMockCluster(rk);

        public int BrokerSetDown(IntPtr cluster, int broker) => brokerSetDown(cluster, broker);

        public int BrokerSetUp(IntPtr cluster, int broker) => brokerSetUp(cluster, broker);

        public int PartitionSetLeader(IntPtr cluster, IntPtr topic, int partition, int broker) => partitionSetLeader(cluster, topic, partition, broker);

        public int CoordinatorSet(IntPtr cluster, IntPtr keyType, IntPtr key, int broker) => coordinatorSet(cluster, keyType, key, broker);
    }
}
