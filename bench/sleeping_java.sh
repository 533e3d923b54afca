# Sourced by bench scripts. start_sleeping_java DIR: compiles into DIR and starts, in the
# background, a java of $JDK (OpenJDK 17) that sleeps for an hour; sets JPID and returns once
# libjvm.so is mapped and the JVM has had 2 s to finish starting.
start_sleeping_java() {
    cat >"$1/Sleep.java" <<'JAVA'
public class Sleep {
    public static void main(String[] args) throws Exception {
        Thread.sleep(3_600_000L);
    }
}
JAVA
    "$JDK/bin/javac" -d "$1" "$1/Sleep.java"
    "$JDK/bin/java" -cp "$1" Sleep &
    JPID=$!
    for _ in $(seq 100); do grep -q libjvm.so "/proc/$JPID/maps" 2>/dev/null && break; sleep 0.1; done
    sleep 2
}
