-- The normal form of an argument that holds a '/' (a path, or one inside an option such as
-- --out=/srv/x), as a rule's patterns must also accept it: each run of '/' one '/' (except the
-- '//' of a URL's scheme://) and no '.' segment. '..' is kept: it is refused, or allowed, as
-- it is (command_args_refusal). Other arguments are their own normal form.
CREATE OR REPLACE FUNCTION {{schema}}.command_arg_normal(a text)
 RETURNS text
 LANGUAGE sql
 IMMUTABLE
AS $function$
  SELECT CASE WHEN position('/' IN a) = 0 THEN a
              ELSE regexp_replace(regexp_replace(regexp_replace(a, '(?<![:/])/{2,}', '/', 'g'),
                                                 '(^|/)(\./)+', '\1', 'g'),
                                  '/\.$', '/') END
$function$;
