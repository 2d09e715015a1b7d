ALTER TABLE streams DROP COLUMN ingress_generation;
